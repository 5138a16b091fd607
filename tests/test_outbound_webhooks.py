"""Outbound webhooks: events written with the change they report, signed as Standard
Webhooks (verified by a local receiver with its library), retried, logged."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta

import httpx
import sqlalchemy as sa
from rq.registry import ScheduledJobRegistry

from crm_app.config import settings_of
from crm_app.drip.audience.contacts import ContactInput, create_contact
from crm_app.drip.audience.ending import stop
from crm_app.drip.outbound.addresses import CheckedTransport
from crm_app.drip.outbound.deliveries import sweep
from crm_app.drip.outbound.sending import MAX_ATTEMPTS, RETRY_DELAYS, SendOptions, deliver_one
from crm_app.models import WebhookAttempt, WebhookDelivery, utcnow
from crm_app.queue import get_queue
from tests.outbound_helpers import deliveries, work_queue

OPTIONS = SendOptions(timeout=5, lease=timedelta(seconds=60), disable_after=timedelta(days=5))


def attempt(session, delivery_id: int, at=None, *, allow_private=True, schedule=None) -> str:
    """One attempt, as the job makes it, at the moment `at`."""
    client = httpx.Client(transport=CheckedTransport(allow_private=allow_private))
    moment = at or utcnow()
    return deliver_one(
        session, delivery_id, client=client, options=OPTIONS, schedule_retry=schedule,
        now=lambda: moment,
    )  # fmt: skip


def new_contact(session, email="ann@example.com", contact_type="lead") -> object:
    contact = create_contact(
        session, ContactInput(email=email, contact_type=contact_type, first_name="Ann"),
        actor="api:signup-form",
    )  # fmt: skip
    session.commit()
    return contact


def test_receiver_verifies_the_signed_contact_enrolled_event(
    session, campaigns, receiver, make_endpoint
):
    make_endpoint(["contact.enrolled"])
    contact_id, lead_id = new_contact(session).id, campaigns["lead"].id

    work_queue()

    (event,) = receiver.of_type("contact.enrolled")
    assert receiver.refused == []  # Webhook(secret).verify(body, headers) accepted it
    assert event["data"]["contact"]["id"] == contact_id
    assert event["data"]["contact"]["email"] == "ann@example.com"
    assert event["data"]["campaign"] == {"id": lead_id, "name": "Lead"}
    assert event["data"]["actor"] == "api:signup-form"
    (delivery,) = deliveries(session)
    assert delivery.status == "delivered" and delivery.response_status == 200
    assert list(receiver.events) == [delivery.event_id]  # webhook-id: the stable event id


def test_a_forged_or_other_secret_fails_the_receivers_check(
    session, campaigns, receiver, make_endpoint
):
    make_endpoint(["contact.created"])
    receiver.secret = "whsec_" + "A" * 43  # the receiver holds another secret
    new_contact(session)

    work_queue()

    assert receiver.events == {}
    assert receiver.refused == ["No matching signature found"]
    (delivery,) = deliveries(session)
    assert delivery.status == "pending" and delivery.response_status == 401  # retried later


def test_each_change_writes_its_event_in_its_own_transaction(session, campaigns, make_endpoint):
    make_endpoint()
    contact = create_contact(
        session, ContactInput(email="rolled@example.com", contact_type="lead"), actor="test"
    )
    assert {d.event_type for d in session.scalars(sa.select(WebhookDelivery))} == {
        "contact.created",
        "contact.enrolled",
    }  # written, not yet committed
    session.rollback()  # the change is undone: so are its events

    assert deliveries(session) == []
    assert contact not in session


def test_timeline_kinds_map_to_event_types(session, campaigns, make_endpoint, make_contact):
    make_endpoint()
    contact = make_contact("lead", email="mapped@example.com")
    stop(session, contact.enrollments[0], reason="test", actor="test")
    session.commit()

    assert [d.event_type for d in deliveries(session)] == [
        "contact.created",
        "contact.enrolled",
        "enrollment.stopped",
    ]


def test_only_subscribed_event_types_are_written(session, campaigns, make_endpoint):
    make_endpoint(["enrollment.stopped"])
    new_contact(session)

    assert deliveries(session) == []


def test_no_endpoint_writes_nothing(session, campaigns):
    new_contact(session)

    assert session.scalar(sa.select(sa.func.count(WebhookDelivery.id))) == 0


def test_a_disabled_endpoint_is_sent_no_new_event(session, campaigns, make_endpoint):
    endpoint = make_endpoint()
    endpoint.enabled = False
    session.commit()
    from crm_app.drip.outbound.events import invalidate_subscriptions

    invalidate_subscriptions()
    new_contact(session)

    assert deliveries(session) == []


def test_each_endpoint_gets_the_event_with_the_same_id(session, campaigns, receiver, make_endpoint):
    make_endpoint(["contact.created"])
    make_endpoint(["contact.created"], url=receiver.url + "?second")
    new_contact(session)

    first, second = deliveries(session)
    assert first.event_id == second.event_id and first.endpoint_id != second.endpoint_id
    assert first.body == second.body


def test_a_receiver_answering_500_then_200_gets_the_event_once_after_the_retry(
    app, session, campaigns, receiver, make_endpoint
):
    make_endpoint(["contact.created"])
    receiver.script(500, 200)
    new_contact(session)

    work_queue()  # the first attempt: 500

    (delivery,) = deliveries(session)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 1, 500)
    assert delivery.next_attempt_at - delivery.last_attempt_at == RETRY_DELAYS[0]  # 5 s
    scheduled = ScheduledJobRegistry(queue=get_queue())
    assert len(scheduled.get_job_ids()) == 1  # RQ holds the retry for its time
    assert receiver.events == {}

    assert attempt(session, delivery.id) == "skipped"  # not due yet: nothing sent
    assert attempt(session, delivery.id, at=delivery.next_attempt_at) == "delivered"
    assert attempt(session, delivery.id, at=delivery.next_attempt_at) == "skipped"

    assert receiver.answers == [500, 200]
    assert [len(bodies) for bodies in receiver.events.values()] == [1]  # once
    (delivery,) = deliveries(session)
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    log = session.scalars(sa.select(WebhookAttempt).order_by(WebhookAttempt.attempt)).all()
    assert [(a.attempt, a.response_status, a.succeeded) for a in log] == [
        (1, 500, False),
        (2, 200, True),
    ]


def test_the_retries_follow_the_schedule_then_the_delivery_fails(
    session, campaigns, receiver, make_endpoint
):
    make_endpoint(["contact.created"])
    receiver.script(*[503] * MAX_ATTEMPTS)
    new_contact(session)
    (delivery,) = deliveries(session)
    at, waits = utcnow(), []

    for _ in range(MAX_ATTEMPTS):
        attempt(session, delivery.id, at=at)
        (delivery,) = deliveries(session)
        if delivery.next_attempt_at is not None:
            waits.append(delivery.next_attempt_at - at)
            at = delivery.next_attempt_at

    assert waits == list(RETRY_DELAYS)  # 5 s, 5 min, 30 min, 2 h, 5 h, 10 h
    assert (delivery.status, delivery.attempts) == ("failed", MAX_ATTEMPTS)
    assert attempt(session, delivery.id, at=at + timedelta(days=1)) == "skipped"
    assert receiver.answers == [503] * MAX_ATTEMPTS


def test_an_endpoint_failing_for_days_is_disabled_with_a_notice(
    session, campaigns, receiver, make_endpoint
):
    endpoint = make_endpoint(["contact.created"])
    receiver.script(*[500] * 100)
    start = utcnow()
    for day in range(7):
        new_contact(session, email=f"day{day}@example.com")
        at = start + timedelta(days=day)
        delivery = deliveries(session, status="pending")[-1]
        for _ in range(MAX_ATTEMPTS):
            attempt(session, delivery.id, at=at)
            session.refresh(delivery)
            at = delivery.next_attempt_at or at
        session.refresh(endpoint)
        if not endpoint.enabled:
            break

    assert not endpoint.enabled
    assert day == 5  # the first delivery given up on after 5 days of failures
    assert "Disabled automatically" in endpoint.disabled_reason


def test_a_success_clears_the_failing_streak(session, campaigns, receiver, make_endpoint):
    endpoint = make_endpoint(["contact.created"])
    receiver.script(500, 200)
    new_contact(session)
    (delivery,) = deliveries(session)
    attempt(session, delivery.id)
    session.refresh(endpoint)
    assert endpoint.failing_since is not None

    attempt(session, delivery.id, at=utcnow() + timedelta(seconds=10))

    session.refresh(endpoint)
    assert endpoint.failing_since is None


def test_a_private_address_is_refused_at_send_time_too(session, campaigns, receiver, make_endpoint):
    # Registered while allowed (or when its DNS said public); now the check refuses it.
    make_endpoint(["contact.created"])
    new_contact(session)
    (delivery,) = deliveries(session)

    assert attempt(session, delivery.id, allow_private=False) == "retry"

    (delivery,) = deliveries(session)
    assert delivery.response_status is None
    assert "127.0.0.1, a loopback address" in delivery.error
    assert receiver.answers == []  # no connection was made


def test_a_redirect_is_not_followed(session, campaigns, receiver, make_endpoint):
    make_endpoint(["contact.created"])
    receiver.script(307)
    new_contact(session)
    (delivery,) = deliveries(session)

    assert attempt(session, delivery.id) == "retry"
    assert receiver.answers == [307]


def test_a_receiver_trickling_its_answer_is_cut_off_at_the_timeout_in_all(
    session, campaigns, receiver, make_endpoint
):
    # A byte every 0.3 s: each read is well within the timeout; the answer ends after
    # 6 s (it could be hours).
    server = socket.create_server(("127.0.0.1", 0))
    stop_sending = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(20):
                    if stop_sending.wait(0.3):
                        return
                    conn.sendall(b"a")
                conn.sendall(b"\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    make_endpoint(["contact.created"], url=f"http://127.0.0.1:{server.getsockname()[1]}/hook")
    new_contact(session)
    (delivery,) = deliveries(session)
    options = SendOptions(timeout=1, lease=timedelta(seconds=60), disable_after=timedelta(days=5))
    client = httpx.Client(transport=CheckedTransport(allow_private=True))
    try:
        started = time.monotonic()
        outcome = deliver_one(session, delivery.id, client=client, options=options)
        elapsed = time.monotonic() - started
    finally:
        stop_sending.set()
        thread.join(5)
        server.close()

    # Held past the lease, the sweep would have sent it again while still in flight.
    assert elapsed < 3
    assert outcome == "retry"
    (delivery,) = deliveries(session)
    assert delivery.response_status is None and "Timeout" in delivery.error


def test_the_sweep_enqueues_deliveries_whose_job_was_lost(
    app, session, campaigns, receiver, make_endpoint, redis_url
):
    import redis

    make_endpoint(["contact.created"])
    new_contact(session)
    redis.Redis.from_url(redis_url).flushdb()  # the job never reaches a worker
    work_queue()
    assert receiver.events == {}
    lease = timedelta(seconds=settings_of(app).webhook_lease_seconds)

    assert sweep(session, lease=lease) == []  # within the lease: it may still be queued
    found = sweep(session, lease=lease, now=utcnow() + lease + timedelta(seconds=1))
    session.commit()

    assert len(found) == 1
    from crm_app.jobs import deliver_webhooks

    deliver_webhooks(found)
    assert len(receiver.of_type("contact.created")) == 1


def test_email_events_from_the_sendgrid_webhook_are_sent_on(
    session, campaigns, make_endpoint, make_contact
):
    from crm_app.drip.tracking.events import ingest_events
    from crm_app.models import Message

    make_endpoint(["email.delivered", "email.opened", "email.clicked", "email.bounced"])
    contact = make_contact("lead", email="reader@example.com")
    enrollment = contact.enrollments[0]
    message = Message(
        enrollment_id=enrollment.id, step_id=enrollment.campaign.steps[0].id,
        contact_id=contact.id, campaign_id=enrollment.campaign_id,
        status="sent", to_email=contact.email, subject="Hi", sent_at=utcnow(),
    )  # fmt: skip
    session.add(message)
    session.commit()
    events = [
        {"event": kind, "email": contact.email, "timestamp": 1_763_640_000 + n,
         "sg_event_id": f"e{n}", "message_id": str(message.id)}
        for n, kind in enumerate(["delivered", "open", "click", "bounce"])
    ]  # fmt: skip

    ingest_events(session, events)
    session.commit()

    assert [d.event_type for d in deliveries(session)] == [
        "email.delivered",
        "email.opened",
        "email.clicked",
        "email.bounced",
    ]
    body = deliveries(session)[0].body
    assert f'"email": "{contact.email}"' in body and '"name": "Lead"' in body


def test_a_job_sends_its_deliveries_on_several_threads_each_once(
    session, campaigns, receiver, make_endpoint
):
    from sqlalchemy.orm import Session

    from crm_app.drip.outbound.sending import deliver_many
    from crm_app.extensions import db

    make_endpoint(["contact.created"])
    for n in range(12):
        new_contact(session, email=f"t{n}@example.com")
    ids = [d.id for d in deliveries(session)]
    receiver.delay = 0.05
    client = httpx.Client(transport=CheckedTransport(allow_private=True))
    engine = db.engine

    outcomes = deliver_many(
        lambda: Session(engine), ids + ids, client=client, options=OPTIONS, threads=5
    )  # each id twice, on two threads: as if two jobs had it

    assert outcomes == {"delivered": 12, "skipped": 12}
    assert sorted(len(bodies) for bodies in receiver.events.values()) == [1] * 12
