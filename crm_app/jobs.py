"""RQ entry points: thin wrappers around the drip core.

They run inside the app context that worker.py pushes once per process. Run
under a plain `rq worker`, they create the app once for that process instead.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, has_app_context
from rq import get_current_job
from sqlalchemy.orm import Session

from crm_app import create_app
from crm_app.config import settings_of
from crm_app.drip.audience.bulk_actions import BulkAction, Selection, run_bulk_action
from crm_app.drip.delivery.backends import Backend, backend_from_settings
from crm_app.drip.delivery.pipeline import deliver_concurrently
from crm_app.drip.delivery.tick import run_tick
from crm_app.extensions import db
from crm_app.queue import enqueue_deliveries, get_queue, schedule_delivery

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
        )
    finally:
        db.session.remove()
    log.info("tick: %s", result.as_dict())
    return result.as_dict()


def deliver_messages(ids: list[int]) -> dict:
    """Deliver a batch of messages (see crm_app/drip/delivery/pipeline.py)."""
    _ensure_app_context()
    queue = get_queue()
    engine = db.engine

    def make_session() -> Session:
        # One session (one pooled connection) per sending thread. Objects stay loaded
        # across the commits: every write that matters is a conditional UPDATE, so a
        # stale attribute cannot cause a second send, and each chunk is loaded afresh
        # (populate_existing) just before its claim.
        return Session(engine, expire_on_commit=False)

    try:
        report = deliver_concurrently(
            make_session,
            list(ids),
            _backend(),
            settings_of(current_app),
            schedule_retry=lambda message_id, when: schedule_delivery(queue, message_id, when),
        )
    finally:
        db.session.remove()
    return report.as_dict()


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
