"""RQ entry points: thin wrappers around the drip core.

They run inside the app context that worker.py pushes once per process. Run
under a plain `rq worker`, they create the app once for that process instead.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, has_app_context
from sqlalchemy.orm import Session

from crm_app.extensions import db
from crm_app.queue import enqueue_deliveries, get_queue, schedule_delivery, setting

log = logging.getLogger(__name__)

_fallback_app: Flask | None = None


def _ensure_app_context() -> None:
    global _fallback_app
    if has_app_context():
        return
    if _fallback_app is None:
        from crm_app import create_app

        _fallback_app = create_app()
        _fallback_app.app_context().push()  # once per process, kept for its lifetime


def _backend():
    """One backend per process (the SendGrid client is reused between jobs)."""
    backend = current_app.extensions.get("drip_backend")
    if backend is None:
        from crm_app.drip.delivery.backends import backend_from_config

        backend = backend_from_config(current_app.config)
        current_app.extensions["drip_backend"] = backend
    return backend


def tick() -> dict:
    """The scheduler's job (every minute): due steps -> message rows -> delivery jobs."""
    _ensure_app_context()
    from crm_app.drip.delivery.tick import run_tick

    config = current_app.config
    batch_size = setting(config, "DELIVERY_BATCH_SIZE", 200)
    queue = get_queue()
    try:
        result = run_tick(
            db.session,
            lambda ids: enqueue_deliveries(queue, ids, batch_size),
            lease_seconds=setting(config, "DELIVERY_LEASE_SECONDS", 600),
            chunk_size=setting(config, "DELIVERY_TICK_CHUNK", 5000),
        )
    finally:
        db.session.remove()
    log.info("tick: %s", result.as_dict())
    return result.as_dict()


def deliver_messages(ids: list[int]) -> dict:
    """Deliver a batch of messages with DELIVERY_THREADS sending threads, each claiming
    DELIVERY_CLAIM_CHUNK messages at a time (claim committed before the sends, results
    committed after them; see crm_app/drip/delivery.py)."""
    _ensure_app_context()
    from crm_app.drip.delivery.pipeline import DeliverySettings, deliver_concurrently

    config = current_app.config
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
            DeliverySettings.from_config(config),
            threads=setting(config, "DELIVERY_THREADS", 8),
            claim_chunk=setting(config, "DELIVERY_CLAIM_CHUNK", 10),
            schedule_retry=lambda message_id, when: schedule_delivery(queue, message_id, when),
        )
    finally:
        db.session.remove()
    return report.as_dict()


def enqueue_messages(ids: list[int]) -> int:
    """For admin actions (retry, resend): after their commit, put the ids on Redis."""
    return enqueue_deliveries(
        get_queue(), ids, setting(current_app.config, "DELIVERY_BATCH_SIZE", 200)
    )


def noop() -> None:
    """RQ's own per-job floor, for the benchmark."""
