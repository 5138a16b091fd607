"""Never twice, never lost, through what people and API clients do: each test drives
the real web routes (CSRF and all) or the API, lets the worker deliver to the local
SendGrid server, and counts what that server received per message."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.delivery.tick import run_tick
from crm_app.models import Enrollment, Message, utcnow
from tests.delivery_helpers import queued_now
from tests.webhook_signing import WebhookSigner, encode

pytest_plugins = ["tests.conftest_delivery"]

WEBHOOK = "/webhooks/sendgrid"


@pytest.fixture
def signer(app, monkeypatch):
    signer = WebhookSigner()
    monkeypatch.setitem(app.config, "SENDGRID_WEBHOOK_PUBLIC_KEY", signer.public_key_b64)
    return signer


def _post_events(web, signer, message: Message, *kinds: str) -> None:
    events = [
        {
            "event": kind,
            "email": message.to_email,
            "timestamp": int(message.claimed_at.timestamp()),
            "sg_event_id": f"{kind}-{message.id}",
            "message_id": str(message.id),
        }
        for kind in kinds
    ]
    body = encode(events)
    response = web.client.post(WEBHOOK, data=body, headers=signer.headers(body))
    assert response.status_code == 200, response.get_data(as_text=True)


def _in_doubt_after_a_reset(session, make_contact, fake_sendgrid, backend, settings) -> Message:
    """The contact's first email, read by SendGrid but answered with a reset: in doubt."""
    message = queued_now(session, make_contact("lead"))
    fake_sendgrid.script("reset")
    deliver_messages(session, [message.id], backend, settings)
    session.refresh(message)
    assert message.status == "in_doubt"
    return message


def test_an_admin_resend_that_sendgrid_then_reports_is_not_sent_again(
    admin, signer, session, make_contact, fake_sendgrid, backend, settings
):
    message = _in_doubt_after_a_reset(session, make_contact, fake_sendgrid, backend, settings)
    admin.post(f"/admin/messages/{message.id}/resend")
    session.expire_all()
    assert session.get(Message, message.id).status == "queued"
    # SendGrid's report of the first attempt arrives before a worker picks the resend up.
    _post_events(admin, signer, message, "processed")
    deliver_messages(session, [message.id], backend, settings)

    session.expire_all()
    settled = session.get(Message, message.id)
    assert dict(fake_sendgrid.deliveries) == {}  # the first copy is the only one
    assert settled.status == "sent" and settled.in_doubt_resolution == "sendgrid"
    assert settled.enrollment.current_step == 2  # and the contact moves on


def test_an_admin_resend_held_by_a_pause_that_sendgrid_then_reports_is_not_sent_again(
    admin, signer, session, make_contact, fake_sendgrid, backend, settings
):
    message = _in_doubt_after_a_reset(session, make_contact, fake_sendgrid, backend, settings)
    campaign_id = message.campaign_id
    admin.post(f"/admin/messages/{message.id}/resend")
    admin.post(f"/campaigns/{campaign_id}/status", {"status": "paused"})
    deliver_messages(session, [message.id], backend, settings)  # skipped: paused
    session.expire_all()
    assert session.get(Message, message.id).status == "skipped"
    _post_events(admin, signer, message, "delivered")
    admin.post(f"/campaigns/{campaign_id}/status", {"status": "active"})
    queued: list[int] = []
    run_tick(session, queued.extend)
    deliver_messages(session, [message.id, *queued], backend, settings)

    session.expire_all()
    assert dict(fake_sendgrid.deliveries) == {}
    assert session.get(Message, message.id).status == "sent"
    # The same row settled: the tick made no second one for the step.
    same_step = sa.select(sa.func.count()).where(Message.contact_id == message.contact_id)
    assert session.scalar(same_step) == 1


def test_stop_enrol_again_and_a_tick_while_the_worker_renders_send_the_email_once(
    admin, session, make_contact, fake_sendgrid, backend, settings, monkeypatch
):
    """In the instant between a worker reading a queued email and claiming it, a person
    stops the enrolment and enrols the contact again (it resumes at that email, never
    sent), and a tick queues the resumed enrolment's copy: the contact must get the
    email once, not once per enrolment."""
    from sqlalchemy.orm import Session

    from crm_app.drip.delivery import chunk
    from crm_app.extensions import db

    contact = make_contact("lead")
    message = queued_now(session, contact)
    campaign_id, first_enrollment = message.campaign_id, message.enrollment_id
    real_compose, queued = chunk.compose, []

    def compose_while_a_person_acts(*args, **kwargs):
        if not queued:  # the worker has read the row as queued, its enrolment active
            base = f"/contacts/{contact.id}/enrollments"
            assert admin.post(f"{base}/{first_enrollment}/stop").status_code == 302
            assert admin.post(base, {"campaign_id": campaign_id}).status_code == 302
            with Session(db.engine) as scheduler:  # the scheduler's own connection
                scheduler.execute(
                    sa.update(Enrollment)
                    .where(Enrollment.contact_id == contact.id, Enrollment.status == "active")
                    .values(next_send_at=utcnow())
                )
                scheduler.commit()
                run_tick(scheduler, queued.extend)
            assert queued, "the resumed enrolment's email was queued"
        return real_compose(*args, **kwargs)

    monkeypatch.setattr(chunk, "compose", compose_while_a_person_acts)
    deliver_messages(session, [message.id], backend, settings)
    monkeypatch.setattr(chunk, "compose", real_compose)
    deliver_messages(session, [message.id, *queued], backend, settings)

    session.expire_all()
    sent = session.scalars(
        sa.select(Message.step_id).where(Message.contact_id == contact.id, Message.status == "sent")
    ).all()
    assert sum(fake_sendgrid.deliveries.values()) == 1, "the email went out twice"
    assert len(sent) == 1
