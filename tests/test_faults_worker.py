"""Never twice, never lost, with real RQ workers: overlapping ticks, a worker killed
mid-send, Redis flushed between tick and work."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
import redis as redis_lib
import sqlalchemy as sa

from crm_app.drip.delivery.tick import run_tick
from crm_app.extensions import db
from crm_app.models import Message, utcnow
from crm_app.queue import enqueue_deliveries, get_queue, get_redis
from tests.delivery_helpers import (
    ROOT,
    bulk_due,
    kill_worker,
    open_all_week,
    start_worker,
    statuses,
    wait_for,
    worker_env,
)

pytestmark = pytest.mark.slow

# The kill tests' lease: the tick after a kill runs with a clock past it, no sleeping.
LEASE_SECONDS = 1


def _past_the_lease():
    return utcnow() + timedelta(seconds=LEASE_SECONDS + 1)


@pytest.fixture
def sendgrid_app(app, fake_sendgrid, monkeypatch):
    """The app's jobs deliver through the real sendgrid client to the local fake."""
    monkeypatch.setitem(app.config, "SENDGRID_API_KEY", "SG.test-key")
    monkeypatch.setitem(app.config, "SENDGRID_API_HOST", fake_sendgrid.url)
    app.extensions.pop("drip_backend", None)
    yield app
    app.extensions.pop("drip_backend", None)


def _work_in_process() -> None:
    """An in-process burst worker of the same class worker.py runs."""
    sys.path.insert(0, str(ROOT))
    from worker import AppWorker

    AppWorker([get_queue()], connection=get_redis()).work(burst=True, with_scheduler=False)


def _due_campaign(session, campaigns, count: int, **kw) -> list[int]:
    campaign = campaigns["client"]
    open_all_week(campaign)
    session.commit()
    return bulk_due(session, campaign, count, utcnow() - timedelta(minutes=1), **kw)


def _assert_each_sent_message_delivered_once(session, fake) -> None:
    """No duplicate at the server; every `sent` row reached it; anything else that
    reached it is `in_doubt` (it may have gone out: that is what in doubt means)."""
    assert fake.duplicates() == {}
    by_status: dict[str, set[str]] = {}
    for message_id, status in session.execute(sa.select(Message.id, Message.status)):
        by_status.setdefault(status, set()).add(str(message_id))
    sent, in_doubt = by_status.get("sent", set()), by_status.get("in_doubt", set())
    assert sent <= set(fake.deliveries)
    assert set(fake.deliveries) - sent <= in_doubt


def test_two_ticks_at_once_create_and_deliver_each_message_once(
    session, sendgrid_app, campaigns, fake_sendgrid
):
    _due_campaign(session, campaigns, 500)
    barrier = threading.Barrier(2)
    results, errors = [], []
    now = utcnow()

    def tick() -> None:
        try:
            with sendgrid_app.app_context():
                queue = get_queue()
                barrier.wait()
                results.append(
                    run_tick(
                        db.session,
                        lambda ids: enqueue_deliveries(queue, ids, 50),
                        now=now,
                        chunk_size=100,
                    )
                )
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []

    enqueued = [i for r in results for i in r.enqueued]
    assert sum(r.created for r in results) == 500
    assert len(enqueued) == len(set(enqueued)) == 500
    assert session.scalar(sa.select(sa.func.count(Message.id))) == 500

    _work_in_process()

    assert statuses(session) == {"sent": 500}
    assert len(fake_sendgrid.deliveries) == 500
    _assert_each_sent_message_delivered_once(session, fake_sendgrid)


def test_two_tick_processes_at_once_on_postgresql(
    session, sendgrid_app, campaigns, fake_sendgrid, database_url, redis_url, tmp_path
):
    if not database_url.startswith("postgresql"):
        pytest.skip("two processes racing needs PostgreSQL (SQLite serialises its writers)")
    _due_campaign(session, campaigns, 500)
    env = worker_env(sendgrid_app, database_url, redis_url, fake_sendgrid, tmp_path)
    env.update({"DELIVERY_TICK_CHUNK": "50", "DELIVERY_BATCH_SIZE": "50"})
    code = "import crm_app.jobs as jobs, json; print(json.dumps(jobs.tick()))"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, cwd=str(ROOT), stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [
        json.loads(p.communicate(timeout=120)[0].decode().strip().splitlines()[-1])
        for p in processes
    ]

    assert sum(o["created"] for o in outputs) == 500
    assert sum(o["enqueued"] for o in outputs) == 500
    _work_in_process()
    assert statuses(session) == {"sent": 500}
    _assert_each_sent_message_delivered_once(session, fake_sendgrid)


def test_worker_killed_mid_send_then_a_new_worker_never_sends_twice(
    session, sendgrid_app, campaigns, fake_sendgrid, database_url, redis_url, tmp_path
):
    _due_campaign(session, campaigns, 30)
    queue = get_queue()
    run_tick(session, lambda ids: enqueue_deliveries(queue, ids, 10), now=utcnow())
    fake_sendgrid.delay = 0.3  # each send takes a while: the kill lands inside one
    env = worker_env(sendgrid_app, database_url, redis_url, fake_sendgrid, tmp_path)
    # One request in flight at a time: exactly one email in flight. Many in flight is
    # tests/test_delivery_in_flight.py.
    env.update({"DELIVERY_CONCURRENCY": "1", "DELIVERY_CLAIM_CHUNK": "1"})

    worker = start_worker(env)
    try:
        assert wait_for(
            lambda: sum(fake_sendgrid.deliveries.values()) >= 3 and fake_sendgrid.in_flight > 0,
            timeout=60,
        ), worker.stdout.read1().decode() if worker.poll() is not None else "no progress"
        kill_worker(worker)
    finally:
        kill_worker(worker)
    wait_for(lambda: fake_sendgrid.in_flight == 0, timeout=5)
    fake_sendgrid.delay = 0
    session.expire_all()
    assert statuses(session).get("sending") == 1  # the one in flight when it died

    result = run_tick(
        session,
        lambda ids: enqueue_deliveries(queue, ids, 10),
        now=_past_the_lease(),
        lease_seconds=LEASE_SECONDS,
    )
    assert result.in_doubt == 1

    second = start_worker(env, "--burst")
    output = second.communicate(timeout=120)[0].decode()
    assert second.returncode == 0, output

    session.expire_all()
    assert statuses(session) == {"sent": 29, "in_doubt": 1}
    _assert_each_sent_message_delivered_once(session, fake_sendgrid)
    in_doubt = session.scalar(sa.select(Message.id).where(Message.status == "in_doubt"))
    assert fake_sendgrid.deliveries.get(str(in_doubt), 0) <= 1


def test_redis_flushed_between_tick_and_work_still_delivers_everything_once(
    session, sendgrid_app, campaigns, fake_sendgrid, redis_url
):
    _due_campaign(session, campaigns, 40)
    queue = get_queue()
    now = utcnow()
    run_tick(session, lambda ids: enqueue_deliveries(queue, ids, 10), now=now, lease_seconds=60)
    redis_lib.Redis.from_url(redis_url).flushdb()

    _work_in_process()
    assert fake_sendgrid.deliveries == {}  # Redis lost every job

    run_tick(
        session,
        lambda ids: enqueue_deliveries(queue, ids, 10),
        now=now + timedelta(seconds=61),
        lease_seconds=60,
    )
    _work_in_process()

    assert statuses(session) == {"sent": 40}
    assert len(fake_sendgrid.deliveries) == 40
    _assert_each_sent_message_delivered_once(session, fake_sendgrid)
