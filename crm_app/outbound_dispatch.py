"""Outbound webhook deliveries onto Redis: right after the commit that wrote them, a
retry at its time, and whatever the sweep finds.

The core marks the deliveries a transaction wrote (`events.mark_for_dispatch`); after
that transaction commits, `_after_commit` enqueues them. Nothing is lost if this fails
or the process dies first: the rows are committed, and the sweep (every minute) enqueues
what was not taken within the lease.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from datetime import datetime

from flask import Flask, current_app, has_app_context
from rq import Queue
from sqlalchemy import event
from sqlalchemy.orm import Session

from crm_app.config import settings_of
from crm_app.drip.outbound.events import PENDING_KEY
from crm_app.queue import get_queue

log = logging.getLogger(__name__)

DELIVER_WEBHOOKS_JOB = "crm_app.jobs.deliver_webhooks"
JOB_SIZE = 50  # deliveries per job: one kept connection sends them in turn
# The app of each engine: the delivery worker's sending threads commit without an app
# context, and their `email.sent` events should not wait for the sweep.
_apps_by_engine: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def job_timeout(app: Flask, count: int) -> int:
    return int(count * (settings_of(app).webhook_timeout_seconds + 1) + 60)


def enqueue_webhook_deliveries(queue: Queue, ids: Sequence[int], app: Flask | None = None) -> int:
    """Jobs of up to JOB_SIZE deliveries; returns the job count."""
    app = app or current_app._get_current_object()
    jobs = [
        Queue.prepare_data(
            DELIVER_WEBHOOKS_JOB,
            args=(list(ids[start : start + JOB_SIZE]),),
            timeout=job_timeout(app, min(JOB_SIZE, len(ids) - start)),
            result_ttl=600,
            description=f"webhooks: {min(JOB_SIZE, len(ids) - start)} deliveries",
        )
        for start in range(0, len(ids), JOB_SIZE)
    ]
    if jobs:
        queue.enqueue_many(jobs)
    return len(jobs)


def schedule_webhook_retry(queue: Queue, delivery_id: int, when: datetime) -> None:
    """The next attempt at `when` (RQ's scheduler, run by worker.py, moves it to the queue)."""
    queue.enqueue_at(when, DELIVER_WEBHOOKS_JOB, [delivery_id], result_ttl=600)


def _app_for(session: Session) -> Flask | None:
    if has_app_context():
        return current_app._get_current_object()
    return _apps_by_engine.get(session.get_bind().engine)


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint: the rows are not committed yet
    ids = session.info.pop(PENDING_KEY, None)
    if not ids:
        return
    app = _app_for(session)
    if app is None:
        return  # the sweep will
    try:
        with app.app_context():
            enqueue_webhook_deliveries(get_queue(app), ids, app)
    except Exception:  # Redis down: committed rows wait for the sweep, the change stands
        log.warning("could not enqueue %d webhook deliveries; the sweep will", len(ids))


def _after_transaction_end(session: Session, transaction) -> None:
    if transaction.parent is None:  # the outermost one ended without a commit (or after
        session.info.pop(PENDING_KEY, None)  # one, already dispatched): forget the ids


def install_dispatch(app: Flask, engine) -> None:
    """Enqueue after every commit (once per process) and remember the app's engine."""
    _apps_by_engine[engine] = app
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_transaction_end", _after_transaction_end)
