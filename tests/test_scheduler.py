"""The scheduler process: RQ's CronScheduler enqueues the tick onto the app's queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from redis import Redis
from rq import Queue
from rq.cron import CronScheduler

from crm_app.scheduler import TICK_INTERVAL_SECONDS, build_scheduler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = "crm_app.jobs.tick"
SWEEP = "crm_app.jobs.sweep_webhooks"
PURGE = "crm_app.jobs.purge_idempotency_keys"
AUTO = "crm_app.jobs.auto_promote_variants"


@pytest.fixture
def connection(app, redis_url):
    return Redis.from_url(redis_url)


@pytest.fixture
def queue(app, connection):
    return Queue(app.config["RQ_QUEUE"], connection=connection)


def test_first_cycle_enqueues_the_tick_and_the_webhook_jobs_on_the_apps_queue(
    app, connection, queue
):
    scheduler = build_scheduler(app, connection)

    enqueued = scheduler.enqueue_jobs()

    assert [job.func_name for job in enqueued] == [TICK, SWEEP, PURGE]
    assert [job.func_name for job in queue.get_jobs()] == [TICK, SWEEP, PURGE]
    assert {job.origin for job in queue.get_jobs()} == {app.config["RQ_QUEUE"]}


def test_auto_promotion_is_scheduled_only_when_switched_on(app, connection, monkeypatch):
    assert AUTO not in [job.func_name for job in build_scheduler(app, connection).get_jobs()]
    monkeypatch.setitem(app.config, "AB_AUTO_PROMOTE_AFTER", 500)
    enqueued = build_scheduler(app, connection).enqueue_jobs()
    assert [job.func_name for job in enqueued] == [TICK, SWEEP, PURGE, AUTO]


def test_no_second_tick_before_the_interval_has_passed(app, connection, queue):
    scheduler = build_scheduler(app, connection)
    scheduler.enqueue_jobs()

    assert scheduler.enqueue_jobs() == []
    assert queue.count == 3


def test_tick_is_enqueued_again_every_minute(app, connection, queue):
    scheduler = build_scheduler(app, connection)
    scheduler.enqueue_jobs()
    cron_job = next(job for job in scheduler.get_jobs() if job.func_name == TICK)
    assert cron_job.next_enqueue_time - cron_job.latest_enqueue_time == timedelta(
        seconds=TICK_INTERVAL_SECONDS
    )

    # Pretend the minute has passed instead of sleeping through it.
    cron_job.next_enqueue_time = cron_job.latest_enqueue_time
    scheduler.enqueue_jobs()

    assert [job.func_name for job in queue.get_jobs()].count(TICK) == 2


def test_scheduler_without_redis_url_explains_what_to_set(app, monkeypatch):
    monkeypatch.setitem(app.config, "REDIS_URL", None)

    with pytest.raises(RuntimeError, match="REDIS_URL"):
        build_scheduler(app)


def test_scheduler_process_enqueues_a_tick_and_stops_cleanly_on_sigterm(
    app, connection, queue, redis_url, database_url
):
    env = dict(
        os.environ,
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        RQ_QUEUE=app.config["RQ_QUEUE"],
        SECRET_KEY="test-secret-key",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "crm_app.scheduler"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while queue.count == 0 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        wait_for_three = time.monotonic() + 10
        while queue.count < 3 and time.monotonic() < wait_for_three:
            time.sleep(0.1)
        assert [job.func_name for job in queue.get_jobs()] == [TICK, SWEEP, PURGE]
        assert len(CronScheduler.all(connection)) == 1  # registered, visible to health checks
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)

    assert process.returncode == 0, output
    assert CronScheduler.all(connection) == []  # unregistered on the way out
