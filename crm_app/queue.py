"""The app's Redis connection and RQ queue (one of each per process), and the two
ways work reaches Redis: delivery jobs now, and a retry at a time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import redis
from flask import Flask, current_app
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job

from crm_app.config import Settings, settings_of

DELIVER_JOB = "crm_app.jobs.deliver_messages"
TICK_JOB = "crm_app.jobs.tick"
IMPORT_JOB = "crm_app.jobs.import_contacts"
# Generous: 100,000 rows take about a minute; a timeout marks the import failed (Resume
# goes on from its last chunk).
IMPORT_JOB_TIMEOUT = 3600
BULK_JOB = "crm_app.jobs.bulk_contact_action"


def _app(app: Flask | None) -> Flask:
    return app or current_app._get_current_object()


def get_redis(app: Flask | None = None) -> redis.Redis:
    app = _app(app)
    connection = app.extensions.get("drip_redis")
    if connection is None:
        connection = redis.Redis.from_url(_redis_url(app))
        app.extensions["drip_redis"] = connection
    return connection


def _redis_url(app: Flask) -> str:
    url = settings_of(app).redis_url
    if not url:
        raise RuntimeError(
            "REDIS_URL is not set: start the app with the run command (it starts the "
            "embedded Redis) or point REDIS_URL at a Redis server."
        )
    return url


def use_blocking_redis(app: Flask, socket_timeout: float) -> redis.Redis:
    """A connection whose reads may block for up to `socket_timeout` s, made the one
    `get_redis` returns in this process (a worker: its jobs share it). RQ blocks on the
    queue for its worker_ttl - 15 s; redis-py's default socket timeout (5 s) cut each
    such wait short, and RQ then slept 1, 2, 4 ... 60 s "reconnecting" while jobs waited."""
    connection = redis.Redis.from_url(_redis_url(app), socket_timeout=socket_timeout)
    app.extensions["drip_redis"] = connection
    return connection


def get_queue(app: Flask | None = None) -> Queue:
    app = _app(app)
    return Queue(settings_of(app).rq_queue, connection=get_redis(app))


def delivery_job_timeout(settings: Settings, batch_size: int) -> int:
    # Long enough for a whole batch against a slow SendGrid: an RQ timeout mid-send
    # would leave a row `sending` (in doubt) for nothing.
    return int(batch_size * (settings.sendgrid_timeout + 1) + 60)


def enqueue_deliveries(queue: Queue, ids: Sequence[int], batch_size: int | None = None) -> int:
    """Enqueue `ids` as delivery jobs of up to `batch_size` messages (DELIVERY_BATCH_SIZE);
    returns the job count."""
    if not ids:
        return 0
    settings = settings_of(current_app)
    batch_size = batch_size or settings.delivery_batch_size
    timeout = delivery_job_timeout(settings, batch_size)
    jobs = [
        Queue.prepare_data(
            DELIVER_JOB,
            args=(list(ids[start : start + batch_size]),),
            timeout=timeout,
            result_ttl=600,
            description=f"deliver {min(batch_size, len(ids) - start)} messages",
        )
        for start in range(0, len(ids), batch_size)
    ]
    # enqueue_many pipelines its writes: one round trip per call, not per job.
    for start in range(0, len(jobs), 500):
        queue.enqueue_many(jobs[start : start + 500])
    return len(jobs)


def enqueue_messages(ids: list[int]) -> int:
    """Put already committed `queued` messages on this app's queue (admin actions)."""
    return enqueue_deliveries(get_queue(), ids)


def schedule_deliveries(
    queue: Queue, message_ids: list[int], when: datetime, *, batch_size: int
) -> None:
    """Their retry at `when` (RQ's scheduler, which worker.py runs, moves it to the
    queue): one job per `batch_size` messages (DELIVERY_BATCH_SIZE)."""
    size = max(1, batch_size)
    for start in range(0, len(message_ids), size):
        queue.enqueue_at(when, DELIVER_JOB, message_ids[start : start + size], result_ttl=600)


def enqueue_import(import_id: int) -> None:
    """Queue a committed import's job. If its worker is killed, RQ retries the abandoned
    job when it cleans its registries, and the job resumes after the last committed
    chunk (the page's Resume button does the same sooner)."""
    get_queue().enqueue(
        IMPORT_JOB,
        import_id,
        job_timeout=IMPORT_JOB_TIMEOUT,
        retry=Retry(max=2),
        result_ttl=86400,
        description=f"import contacts #{import_id}",
    )


def enqueue_bulk_action(
    action: dict, selection: dict, *, actor: str, stop_reason: str, count: int
) -> str:
    """A bulk contact action too large for a request; returns the job id (its progress
    page reads the job). Its result is kept a day, for that page."""
    job = get_queue().enqueue(
        BULK_JOB,
        action,
        selection,
        actor,
        stop_reason,
        job_timeout=int(300 + count * 0.05),  # some 20 contacts/s at worst, plus margin
        result_ttl=86400,
        description=f"bulk {action['action']} on {count} contacts",
    )
    return job.id


def fetch_job(job_id: str):
    """The RQ job with this id, or None (expired, unknown, or an id RQ refuses to read:
    only letters, digits, "_" and "-")."""
    try:
        return Job.fetch(job_id, connection=get_redis())
    except (NoSuchJobError, ValueError):
        return None
