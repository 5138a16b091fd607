"""RQ entry points: thin wrappers around the drip core.

They run inside the app context that worker.py pushes once per process. Run
under a plain `rq worker`, they create the app once for that process instead.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import httpx
from flask import Flask, current_app, has_app_context
from rq import get_current_job
from sqlalchemy.orm import Session

from crm_app import create_app
from crm_app.config import Settings, settings_of
from crm_app.drip.api.idempotency import purge_expired
from crm_app.drip.audience.bulk_actions import BulkAction, Selection, run_bulk_action
from crm_app.drip.audience.import_run import run_import
from crm_app.drip.delivery.backends import Backend, backend_from_settings
from crm_app.drip.delivery.frequency_cap import FrequencyCap
from crm_app.drip.delivery.in_doubt import AutoResolve
from crm_app.drip.delivery.pacing import Pacer
from crm_app.drip.delivery.pipeline import deliver_concurrently
from crm_app.drip.delivery.tick import run_tick
from crm_app.drip.experiments.auto_promotion import auto_promote
from crm_app.drip.outbound.addresses import CheckedTransport
from crm_app.drip.outbound.deliveries import sweep
from crm_app.drip.outbound.sending import SendOptions, deliver_many
from crm_app.drip.reporting.outcome_rollup import compact_enrollment_outcomes
from crm_app.extensions import db
from crm_app.outbound_dispatch import enqueue_webhook_deliveries, schedule_webhook_retry
from crm_app.queue import enqueue_deliveries, get_queue, get_redis, schedule_deliveries

log = logging.getLogger(__name__)

_fallback_app: Flask | None = None


def _ensure_app_context() -> None:
    global _fallback_app
    if has_app_context():
        return
    if _fallback_app is None:
        _fallback_app = create_app()
        _fallback_app.app_context().push()  # once per process, kept for its lifetime


def _backend() -> Backend:
    """One backend per process (the SendGrid client is reused between jobs)."""
    backend = current_app.extensions.get("drip_backend")
    if backend is None:
        backend = backend_from_settings(settings_of(current_app))
        current_app.extensions["drip_backend"] = backend
    return backend


def tick() -> dict:
    """The scheduler's job (every minute): due steps -> message rows -> delivery jobs."""
    _ensure_app_context()
    settings = settings_of(current_app)
    queue = get_queue()
    try:
        result = run_tick(
            db.session,
            lambda ids: enqueue_deliveries(queue, ids),
            lease_seconds=settings.delivery_lease_seconds,
            chunk_size=settings.delivery_tick_chunk,
            frequency_cap=FrequencyCap.from_settings(settings),
            window_grace=timedelta(minutes=settings.send_window_grace_minutes),
            auto_resolve=AutoResolve(
                webhook_configured=bool(settings.sendgrid_webhook_public_key),
                after_minutes=settings.in_doubt_auto_resolve_minutes,
            ),
        )
        # Housekeeping for the analytics: the enrolment outcomes' rows, merged.
        merged = compact_enrollment_outcomes(db.session)
        db.session.commit()
    finally:
        db.session.remove()
    log.info("tick: %s, outcome rows merged: %d", result.as_dict(), merged)
    return result.as_dict()


def deliver_messages(ids: list[int]) -> dict:
    """Deliver a batch of messages (see crm_app/drip/delivery/pipeline.py)."""
    _ensure_app_context()
    queue = get_queue()
    engine = db.engine

    def make_session() -> Session:
        # One session (one pooled connection) for the whole batch. Objects stay loaded
        # across the commits: every write that matters is a conditional UPDATE, so a
        # stale attribute cannot cause a second send, and each chunk is loaded afresh
        # (populate_existing) just before its claim.
        return Session(engine, expire_on_commit=False)

    settings = settings_of(current_app)
    pacer = Pacer(get_redis(), settings.send_rate_per_second, settings.send_backoff_seconds)
    try:
        report = deliver_concurrently(
            make_session,
            list(ids),
            _backend(),
            settings,
            schedule_retry=lambda ids, when: schedule_deliveries(
                queue, ids, when, batch_size=settings.delivery_batch_size
            ),
            pacer=pacer,
        )
    finally:
        db.session.remove()
    return report.as_dict()


def import_contacts(import_id: int) -> dict:
    """Run, or resume after its last committed chunk, a CSV import
    (crm_app/drip/audience/import_run.py); progress is on the import's row."""
    _ensure_app_context()
    settings = settings_of(current_app)
    try:
        report = run_import(
            db.session,
            import_id,
            chunk_size=settings.import_chunk_size,
            stall_seconds=settings.import_stall_seconds,
        )
    finally:
        db.session.remove()
    log.info("import: %s", report.as_dict())
    return report.as_dict()


def _webhook_client(settings: Settings) -> httpx.Client:
    """One client per process (kept connections), calling only allowed addresses."""
    key = ("drip_webhook_client", settings.webhook_allow_private_targets)
    client = current_app.extensions.get(key)
    if client is None:
        transport = CheckedTransport(allow_private=settings.webhook_allow_private_targets)
        client = httpx.Client(transport=transport, follow_redirects=False, trust_env=False)
        current_app.extensions[key] = client
    return client


def deliver_webhooks(ids: list[int]) -> dict:
    """One attempt for each outbound webhook delivery (crm_app/drip/outbound/sending.py),
    WEBHOOK_THREADS at a time."""
    _ensure_app_context()
    settings = settings_of(current_app)
    queue = get_queue()
    engine = db.engine
    options = SendOptions(
        timeout=settings.webhook_timeout_seconds,
        lease=timedelta(seconds=settings.webhook_lease_seconds),
        disable_after=timedelta(days=settings.webhook_disable_after_days),
    )
    try:
        outcomes = deliver_many(
            lambda: Session(engine),
            list(ids),
            client=_webhook_client(settings),
            options=options,
            schedule_retry=lambda i, when: schedule_webhook_retry(queue, i, when),
            threads=settings.webhook_threads,
        )
    finally:
        db.session.remove()
    return dict(outcomes)


def sweep_webhooks() -> dict:
    """Every minute: enqueue the deliveries whose job or worker was lost."""
    _ensure_app_context()
    lease = timedelta(seconds=settings_of(current_app).webhook_lease_seconds)
    try:
        ids = sweep(db.session, lease=lease)
        db.session.commit()
    finally:
        db.session.remove()
    jobs = enqueue_webhook_deliveries(get_queue(), ids) if ids else 0
    return {"deliveries": len(ids), "jobs": jobs}


def auto_promote_variants() -> list[int]:
    """Every 5 minutes: promote the winners of A/B tests that are due (AB_AUTO_PROMOTE_AFTER;
    0, the default, does nothing)."""
    _ensure_app_context()
    settings = settings_of(current_app)
    try:
        promoted = auto_promote(
            db.session,
            after=settings.ab_auto_promote_after,
            min_sends=settings.ab_min_sends_per_variant,
        )
        db.session.commit()
    finally:
        db.session.remove()
    return promoted


def purge_idempotency_keys() -> int:
    """Every hour: forget Idempotency-Key answers older than 24 hours."""
    _ensure_app_context()
    try:
        purged = purge_expired(db.session)
        db.session.commit()
    finally:
        db.session.remove()
    return purged


def bulk_contact_action(action: dict, selection: dict, actor: str, stop_reason: str) -> dict:
    """A bulk action on more contacts than a request should handle: committed chunk by
    chunk, its progress in the job's meta for the progress page."""
    _ensure_app_context()
    job = get_current_job()
    result = None
    try:
        for result in run_bulk_action(
            db.session,
            BulkAction(**action),
            Selection.from_dict(selection),
            actor=actor,
            stop_reason=stop_reason,
        ):
            db.session.commit()
            if job is not None:
                job.meta["progress"] = result.as_dict()
                job.save_meta()
    finally:
        db.session.remove()
    return result.as_dict() if result is not None else {}
