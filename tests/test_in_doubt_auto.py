"""In doubt, resolved without a person (issue 15 item 7): with a healthy Event Webhook,
an in-doubt email SendGrid has no trace of is queued again; otherwise it waits for an
admin. An email with any SendGrid event is never queued again."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from crm_app.drip.delivery.in_doubt import AutoResolve
from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.delivery.tick import run_tick
from crm_app.drip.tracking.events import ingest_events
from crm_app.models import Activity, EmailEvent, Message
from crm_app.models.tracking import WebhookBatch
from tests.delivery_helpers import WEDNESDAY_10, open_all_week

pytest_plugins = ["tests.conftest_delivery"]

CLAIMED = WEDNESDAY_10
ON = AutoResolve(webhook_configured=True, after_minutes=30)


class Recorder:
    def __init__(self):
        self.ids: list[int] = []

    def __call__(self, ids):
        self.ids.extend(ids)


def _in_doubt(session, make_contact) -> Message:
    contact = make_contact("lead")
    enrollment = contact.enrollments[0]
    open_all_week(enrollment.campaign)
    enrollment.next_send_at = None
    message = Message(
        enrollment_id=enrollment.id,
        step_id=enrollment.current_step_id,
        contact_id=contact.id,
        campaign_id=enrollment.campaign_id,
        status="in_doubt",
        attempts=1,
        to_email=contact.email,
        subject="Hello",
        claimed_at=CLAIMED,
        enqueued_at=CLAIMED,
        error="The worker stopped while sending; it may or may not have gone out.",
    )
    session.add(message)
    session.commit()
    return message


def _webhook_batch(session, at) -> None:
    session.add(WebhookBatch(received_at=at, event_count=1, applied_count=1))
    session.commit()


def _event(message, kind="processed", n=1, at=CLAIMED):
    return {
        "event": kind,
        "email": message.to_email,
        "timestamp": int(at.timestamp()),
        "sg_event_id": f"{kind}-{message.id}-{n}",
        "message_id": str(message.id),
    }


def _tick(session, now, policy=ON) -> tuple[Recorder, object]:
    enqueue = Recorder()
    result = run_tick(session, enqueue, now=now, auto_resolve=policy)
    return enqueue, result


def test_no_trace_with_a_healthy_webhook_is_queued_again_and_sent_once(
    session, make_contact, backend, settings, fake_sendgrid
):
    message = _in_doubt(session, make_contact)
    _webhook_batch(session, CLAIMED + timedelta(minutes=35))
    enqueue, result = _tick(session, CLAIMED + timedelta(minutes=36))

    session.refresh(message)
    assert message.status == "queued" and message.in_doubt_resolution == "requeued"
    assert enqueue.ids == [message.id] and result.in_doubt_requeued == 1
    assert session.scalar(
        sa.select(sa.func.count()).where(Activity.kind == "email_requeued_no_trace")
    )
    deliver_messages(session, [message.id], backend, settings)
    deliver_messages(session, [message.id], backend, settings)  # a duplicate job
    session.refresh(message)
    assert message.status == "sent"
    assert dict(fake_sendgrid.deliveries) == {str(message.id): 1}
    # Settled once: a second tick has nothing more to requeue.
    assert _tick(session, CLAIMED + timedelta(minutes=50))[0].ids == []


def test_any_sendgrid_event_keeps_it_from_being_queued_again(session, make_contact):
    message = _in_doubt(session, make_contact)
    # A deferral says SendGrid has it (no `processed` among the events we kept).
    ingest_events(session, [_event(message, "deferred")])
    session.commit()
    _webhook_batch(session, CLAIMED + timedelta(minutes=35))
    enqueue, _ = _tick(session, CLAIMED + timedelta(minutes=36))
    session.refresh(message)
    assert message.status == "in_doubt" and enqueue.ids == []


def test_without_a_configured_webhook_it_waits_for_an_admin(session, make_contact):
    message = _in_doubt(session, make_contact)
    _webhook_batch(session, CLAIMED + timedelta(minutes=35))
    off = AutoResolve(webhook_configured=False, after_minutes=30)
    enqueue, _ = _tick(session, CLAIMED + timedelta(minutes=36), off)
    session.refresh(message)
    assert message.status == "in_doubt" and enqueue.ids == []


def test_with_a_silent_webhook_it_waits_for_an_admin(session, make_contact):
    message = _in_doubt(session, make_contact)
    _webhook_batch(session, CLAIMED + timedelta(minutes=35))
    # The webhook went quiet: its last batch is older than the healthy window.
    enqueue, _ = _tick(session, CLAIMED + timedelta(hours=2))
    session.refresh(message)
    assert message.status == "in_doubt" and enqueue.ids == []


def test_not_before_the_webhook_had_the_time_to_report_it(session, make_contact):
    message = _in_doubt(session, make_contact)
    _webhook_batch(session, CLAIMED + timedelta(minutes=20))  # healthy, but too early
    enqueue, _ = _tick(session, CLAIMED + timedelta(minutes=31))
    session.refresh(message)
    assert message.status == "in_doubt" and enqueue.ids == []


def test_a_late_event_before_the_resend_settles_it_as_sent(
    session, make_contact, backend, settings, fake_sendgrid
):
    message = _in_doubt(session, make_contact)
    _webhook_batch(session, CLAIMED + timedelta(minutes=35))
    _tick(session, CLAIMED + timedelta(minutes=36))
    ingest_events(session, [_event(message, "delivered", at=CLAIMED + timedelta(seconds=2))])
    session.commit()
    session.refresh(message)
    assert message.status == "sent" and message.in_doubt_resolution == "sendgrid"
    deliver_messages(session, [message.id], backend, settings)
    assert dict(fake_sendgrid.deliveries) == {}


def test_the_worker_checks_for_an_event_just_before_the_claim(
    session, make_contact, backend, settings, fake_sendgrid
):
    message = _in_doubt(session, make_contact)
    _webhook_batch(session, CLAIMED + timedelta(minutes=35))
    _tick(session, CLAIMED + timedelta(minutes=36))
    # An event stored by a webhook request that ran alongside the tick's requeue.
    session.add(EmailEvent(sg_event_id="late-1", event="processed", message_id=message.id,
                           occurred_at=CLAIMED, email=message.to_email))  # fmt: skip
    session.commit()
    deliver_messages(session, [message.id], backend, settings)
    session.refresh(message)
    assert message.status == "sent" and dict(fake_sendgrid.deliveries) == {}
    assert message.enrollment.current_step_id != message.step_id  # the enrolment moved on


def test_dashboard_counts_each_way(admin, session, make_contact):
    requeued, webhook, by_admin = (_in_doubt(session, make_contact) for _ in range(3))
    _webhook_batch(session, CLAIMED + timedelta(minutes=35))
    ingest_events(session, [_event(webhook)])
    session.commit()
    admin.post(f"/admin/messages/{by_admin.id}/mark-sent")
    _tick(session, CLAIMED + timedelta(minutes=36))
    session.refresh(requeued)
    assert requeued.in_doubt_resolution == "requeued"
    html = admin.get("/").get_data(as_text=True)
    assert '<b data-resolved="sendgrid">1</b>' in html
    assert '<b data-resolved="requeued">1</b>' in html
    assert '<b data-resolved="admin">1</b>' in html
