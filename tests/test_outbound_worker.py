"""A worker killed while sending a webhook loses no event: the claim it left is swept
after the lease and another worker delivers it, with the same webhook-id."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crm_app.drip.audience.contacts import ContactInput, create_contact
from crm_app.drip.outbound.deliveries import sweep
from crm_app.models import utcnow
from crm_app.outbound_dispatch import enqueue_webhook_deliveries
from crm_app.queue import get_queue
from tests.delivery_helpers import kill_worker, start_worker, wait_for, worker_env
from tests.outbound_helpers import deliveries

pytestmark = pytest.mark.slow

# The workers' lease (WEBHOOK_LEASE_SECONDS): short, so the test need not wait minutes.
LEASE = timedelta(seconds=1)


def test_a_worker_killed_mid_send_loses_no_event(
    app, session, campaigns, receiver, make_endpoint, fake_sendgrid, database_url, redis_url,
    tmp_path,
):  # fmt: skip
    make_endpoint(["contact.created"])
    receiver.delay = 2.0  # each answer takes a while: the kill lands inside the send
    create_contact(
        session, ContactInput(email="kim@example.com", contact_type="lead"), actor="test"
    )
    session.commit()  # the event is written and its job enqueued
    (delivery,) = deliveries(session)
    env = worker_env(app, database_url, redis_url, fake_sendgrid, tmp_path)
    env.update(WEBHOOK_ALLOW_PRIVATE_TARGETS="true", WEBHOOK_LEASE_SECONDS="1")

    worker = start_worker(env)
    try:
        assert wait_for(lambda: receiver.in_flight > 0, timeout=60), "no attempt started"
        kill_worker(worker)
    finally:
        kill_worker(worker)
    (delivery,) = deliveries(session)
    assert delivery.status == "pending" and delivery.claimed_at is not None  # in flight
    receiver.delay = 0
    wait_for(lambda: receiver.in_flight == 0, timeout=5)

    # Within the lease a claim may be a live worker's: the sweep leaves it alone.
    assert sweep(session, lease=timedelta(minutes=2)) == []
    assert wait_for(lambda: utcnow() - delivery.claimed_at > LEASE, timeout=5)
    found = sweep(session, lease=LEASE)
    session.commit()
    assert found == [delivery.id]
    enqueue_webhook_deliveries(get_queue(), found)

    second = start_worker(env, "--burst")
    output = second.communicate(timeout=120)[0].decode()
    assert second.returncode == 0, output

    (delivery,) = deliveries(session)
    assert delivery.status == "delivered"
    # At least once, always under the one webhook-id the receiver dedupes on.
    assert list(receiver.events) == [delivery.event_id]
    bodies = receiver.events[delivery.event_id]
    assert 1 <= len(bodies) <= 2 and all(b == bodies[0] for b in bodies)
