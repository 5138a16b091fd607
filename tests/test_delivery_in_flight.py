"""A worker killed with many requests in flight: every email SendGrid answered 202 is
`sent`, and only the requests still unanswered become in doubt (never a whole claim)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm_app.drip.delivery.tick import run_tick
from crm_app.models import Message, utcnow
from crm_app.queue import enqueue_deliveries, get_queue
from tests.delivery_helpers import (
    bulk_due,
    kill_worker,
    open_all_week,
    start_worker,
    wait_for,
    worker_env,
)

pytestmark = pytest.mark.slow
pytest_plugins = ["tests.conftest_delivery"]

LEASE_SECONDS = 1


@pytest.fixture
def sendgrid_app(app, fake_sendgrid, monkeypatch):
    monkeypatch.setitem(app.config, "SENDGRID_API_KEY", "SG.test-key")
    monkeypatch.setitem(app.config, "SENDGRID_API_HOST", fake_sendgrid.url)
    app.extensions.pop("drip_backend", None)
    yield app
    app.extensions.pop("drip_backend", None)


def _ids_by_status(session) -> dict[str, set[str]]:
    by_status: dict[str, set[str]] = {}
    for message_id, status in session.execute(sa.select(Message.id, Message.status)):
        by_status.setdefault(status, set()).add(str(message_id))
    return by_status


def test_a_worker_killed_with_many_in_flight_leaves_in_doubt_only_the_unanswered(
    session, sendgrid_app, campaigns, fake_sendgrid, database_url, redis_url, tmp_path
):
    campaign = campaigns["client"]
    open_all_week(campaign)
    session.commit()
    bulk_due(session, campaign, 120, utcnow() - timedelta(minutes=1))
    queue = get_queue()
    run_tick(session, lambda ids: enqueue_deliveries(queue, ids, 120), now=utcnow())
    fake_sendgrid.delay = 0.15  # SendGrid's latency
    fake_sendgrid.hang_seconds = 60
    fake_sendgrid.answer_limit = 50  # then every later request waits, unanswered
    env = worker_env(sendgrid_app, database_url, redis_url, fake_sendgrid, tmp_path)
    env.update({"DELIVERY_CONCURRENCY": "40", "DELIVERY_CLAIM_CHUNK": "10"})

    worker = start_worker(env)
    try:
        assert wait_for(
            lambda: len(fake_sendgrid.answers) >= 50 and len(fake_sendgrid.held) >= 30,
            timeout=60,
        ), worker.stdout.read1().decode() if worker.poll() is not None else "no progress"
        time.sleep(0.5)  # ten record slices: the worker has nothing left to do but wait
        kill_worker(worker)
    finally:
        kill_worker(worker)
    answered = set(fake_sendgrid.deliveries)
    held = set(fake_sendgrid.held)
    fake_sendgrid.answer_limit = None
    fake_sendgrid.release.set()
    session.expire_all()
    by_status = _ids_by_status(session)

    assert len(answered) == 50 and len(held) >= 30  # many requests were in flight
    assert by_status["sent"] == answered  # every 202 received is recorded as sent
    assert by_status["sending"] == held  # only what had no answer is left sending
    result = run_tick(
        session,
        lambda ids: enqueue_deliveries(queue, ids, 120),
        now=utcnow() + timedelta(seconds=LEASE_SECONDS + 1),
        lease_seconds=LEASE_SECONDS,
    )
    assert result.in_doubt == len(held)

    second = start_worker(env, "--burst")
    output = second.communicate(timeout=120)[0].decode()
    assert second.returncode == 0, output
    session.expire_all()
    by_status = _ids_by_status(session)
    assert by_status["in_doubt"] == held
    assert len(by_status["sent"]) == 120 - len(held)
    assert fake_sendgrid.duplicates() == {}
    assert set(fake_sendgrid.deliveries) == by_status["sent"]


class JobTimeout(Exception):
    """What RQ's death penalty raises in the job's thread (SIGALRM)."""


def test_a_batch_interrupted_by_its_job_timeout_keeps_every_answer_it_had(
    session, campaigns, backend, settings, fake_sendgrid
):
    import signal

    from crm_app.drip.delivery.pipeline import deliver_messages

    campaign = campaigns["client"]
    open_all_week(campaign)
    session.commit()
    bulk_due(session, campaign, 10, utcnow() - timedelta(minutes=1))
    ids = run_tick(session, lambda ids: None, now=utcnow()).enqueued
    backend.answered_ok = True
    backend.timeout = 5
    fake_sendgrid.hang_seconds = 3
    fake_sendgrid.script("hang")  # the first request gets no answer; the other nine do
    slow_slices = settings.replace(delivery_record_ms=60_000)  # nothing recorded on time

    def timeout(signum, frame):
        raise JobTimeout()

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        deliver_messages(session, ids, backend, slow_slices, concurrency=20, claim_chunk=20)
        raise AssertionError("the job timeout did not interrupt the batch")
    except JobTimeout:
        pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    session.rollback()
    session.expire_all()
    by_status = _ids_by_status(session)
    assert len(by_status["sent"]) == 9 and by_status["sent"] == set(fake_sendgrid.deliveries)
    assert len(by_status["sending"]) == 1  # only the one without an answer
