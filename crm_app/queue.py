"""The app's Redis connection and RQ queue (one of each per process)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import redis
from flask import Flask, current_app
from rq import Queue

DELIVER_JOB = "crm_app.jobs.deliver_messages"
TICK_JOB = "crm_app.jobs.tick"


def setting(config: Any, key: str, default: Any, cast=int) -> Any:
    """A delivery setting from app.config, else the environment, else the default."""
    value = config.get(key)
    if value is None:
        value = os.environ.get(key)
    return default if value in (None, "") else cast(value)


def get_redis(app: Flask | None = None) -> redis.Redis:
    app = app or current_app._get_current_object()
    connection = app.extensions.get("drip_redis")
    if connection is None:
        url = app.config.get("REDIS_URL")
        if not url:
            raise RuntimeError(
                "REDIS_URL is not set: start the app with the run command (it starts the "
                "embedded Redis) or point REDIS_URL at a Redis server."
            )
        connection = redis.Redis.from_url(url)
        app.extensions["drip_redis"] = connection
    return connection


def get_queue(app: Flask | None = None) -> Queue:
    app = app or current_app._get_current_object()
    return Queue(app.config.get("RQ_QUEUE") or "drip", connection=get_redis(app))


def delivery_job_timeout(config: Any, batch_size: int) -> int:
    # Long enough for a whole batch against a slow SendGrid: an RQ timeout mid-send
    # would leave a row `sending` (in doubt) for nothing.
    return int(batch_size * (setting(config, "SENDGRID_TIMEOUT", 10.0, float) + 1) + 60)


def enqueue_deliveries(queue: Queue, ids: Sequence[int], batch_size: int = 200) -> int:
    """Enqueue `ids` as delivery jobs of up to `batch_size` messages; returns the job count."""
    if not ids:
        return 0
    timeout = delivery_job_timeout(current_app.config, batch_size)
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


def schedule_delivery(queue: Queue, message_id: int, when: datetime) -> None:
    """A retry at `when` (RQ's scheduler, which worker.py runs, moves it to the queue)."""
    queue.enqueue_at(when, DELIVER_JOB, [message_id], result_ttl=600)
