"""The send pace (SEND_RATE_PER_SECOND), shared by every worker through Redis, and the
429 that slows it down by itself."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import redis as redis_lib
import sqlalchemy as sa
from sqlalchemy.orm import Session

from crm_app.drip.delivery.backends import OutboxBackend
from crm_app.drip.delivery.pacing import Pacer
from crm_app.drip.delivery.pipeline import deliver_concurrently, deliver_messages
from crm_app.drip.delivery.tick import run_tick
from crm_app.extensions import db
from crm_app.models import Message, utcnow
from tests.delivery_helpers import bulk_due, open_all_week

pytest_plugins = ["tests.conftest_delivery"]


def _queued_bulk(session, campaigns, count: int) -> list[int]:
    campaign = campaigns["client"]
    open_all_week(campaign)
    session.commit()
    bulk_due(session, campaign, count, utcnow() - timedelta(minutes=1))
    return run_tick(session, lambda ids: None, now=utcnow()).enqueued


def _connection(app) -> redis_lib.Redis:
    return redis_lib.Redis.from_url(app.config["REDIS_URL"])


def test_two_workers_together_hold_the_configured_rate_within_ten_percent(
    app, session, campaigns, settings
):
    ids = _queued_bulk(session, campaigns, 160)
    rate = 40.0
    engine = db.engine
    reports = []

    def worker(part: list[int]) -> None:
        pacer = Pacer(_connection(app), rate)  # each worker its own connection, one pace
        reports.append(
            deliver_concurrently(
                lambda: Session(engine, expire_on_commit=False),
                part,
                OutboxBackend(),
                settings,
                pacer=pacer,
            )
        )

    threads = [threading.Thread(target=worker, args=(ids[n::2],)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(len(r.sent) for r in reports) == 160
    times = sorted(session.scalars(sa.select(Message.claimed_at)))
    # The bucket's burst (0.1 s of tokens) goes at once; the rest at the pace.
    span = (times[-1] - times[0]).total_seconds()
    measured = (len(times) - rate * 0.1) / span
    assert abs(measured - rate) <= 0.1 * rate, measured


def test_without_a_rate_nothing_waits(app, session, campaigns, settings):
    ids = _queued_bulk(session, campaigns, 50)
    started = time.monotonic()

    report = deliver_messages(
        session, ids, OutboxBackend(), settings, pacer=Pacer(_connection(app), 0)
    )

    assert len(report.sent) == 50 and time.monotonic() - started < 5


def test_a_429_halves_the_pace_for_every_worker_and_holds_sends_for_retry_after(
    app, session, campaigns, backend, settings, fake_sendgrid
):
    ids = _queued_bulk(session, campaigns, 2)
    pacer = Pacer(_connection(app), 100, backoff_seconds=30)
    fake_sendgrid.retry_after = "2"
    fake_sendgrid.script("429")

    report = deliver_messages(session, ids[:1], backend, settings, pacer=pacer)

    assert report.retrying == [ids[0]]  # a 429 is an answer: queued again, not in doubt
    message = session.get(Message, ids[0])
    session.refresh(message)
    assert message.status == "queued" and message.attempts == 1
    other_worker = Pacer(_connection(app), 100)
    assert other_worker.current_factor() == 0.5
    assert other_worker.take(5).granted == 0  # held for Retry-After, in every worker
    assert _connection(app).ttl("drip:pace:factor") > 25
    pacer.slow_down(None)  # another 429 of the same burst: the pace is not halved again
    assert other_worker.current_factor() == 0.5
    _connection(app).delete("drip:pace:hold")  # Retry-After is over
    pacer.slow_down(None)  # a 429 after it: halved again
    assert other_worker.current_factor() == 0.25


def test_the_shared_bucket_grants_no_more_than_the_rate(app):
    pacer = Pacer(_connection(app), 20)
    started = time.monotonic()
    granted = 0
    while time.monotonic() - started < 1.0:
        grant = pacer.take(10)
        granted += grant.granted
        if grant.granted == 0:
            time.sleep(grant.wait_seconds)
    assert 20 <= granted <= 20 * 1.1 + 2  # one second of tokens, plus the burst
