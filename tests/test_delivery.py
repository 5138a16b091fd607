"""Delivery through the real sendgrid client to the local fake: payload, rendering,
advancing, skipping, unsubscribe, and the admin actions."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm_app.config import Settings
from crm_app.drip.audience.unsubscribe import (
    InvalidUnsubscribeToken,
    make_unsubscribe_token,
    read_unsubscribe_token,
    unsubscribe,
)
from crm_app.drip.campaigns.schedule import send_time_for_step
from crm_app.drip.delivery.admin_actions import (
    DeliveryActionError,
    mark_sent,
    resend_in_doubt,
    retry_failed,
)
from crm_app.drip.delivery.backends import OutboxBackend, backend_from_settings
from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.delivery.tick import run_tick
from crm_app.models import Activity, Enrollment, Message, Suppression, utcnow
from tests.delivery_helpers import (
    message_for,
    open_all_week,
)


def _tick(session, contact, now=None) -> Message:
    """Make the contact's enrolment due now and tick: returns its queued message."""
    now = now or utcnow()
    enrollment = session.scalar(
        sa.select(Enrollment).where(
            Enrollment.contact_id == contact.id, Enrollment.status == "active"
        )
    )
    open_all_week(enrollment.campaign)
    enrollment.next_send_at = now - timedelta(seconds=1)
    session.commit()
    run_tick(session, lambda ids: None, now=now)
    return message_for(session, contact)


def _kinds(session, contact) -> list[str]:
    return list(
        session.scalars(
            sa.select(Activity.kind).where(Activity.contact_id == contact.id).order_by(Activity.id)
        )
    )


def test_sent_payload_carries_ids_headers_both_parts_and_escaped_merge_fields(
    session, make_contact, backend, settings, fake_sendgrid, campaigns
):
    contact = make_contact("lead", first_name="<script>alert(1)</script>", company="Globex")
    message = _tick(session, contact)

    report = deliver_messages(session, [message.id], backend, settings)

    assert report.sent == [message.id]
    assert fake_sendgrid.deliveries == {str(message.id): 1}
    payload = fake_sendgrid.requests[0]
    assert payload["custom_args"] == {
        "message_id": str(message.id),
        "contact_id": str(contact.id),
        "campaign_id": str(campaigns["lead"].id),
        "step_id": str(campaigns["lead"].steps[0].id),
    }
    headers = payload["headers"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    mailto, https = headers["List-Unsubscribe"].split(", ")
    assert mailto == "<mailto:unsubscribe@example.com?subject=unsubscribe>"
    assert https.startswith("<https://crm.example.com/unsubscribe/") and https.endswith(">")
    token = https[len("<https://crm.example.com/unsubscribe/") : -1]
    assert read_unsubscribe_token(token, secret_key=settings.secret_key) == (
        contact.id,
        contact.email.lower(),
    )
    types = [c["type"] for c in payload["content"]]
    assert types == ["text/plain", "text/html"]
    text, html = (c["value"] for c in payload["content"])
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "Acme Consulting" in payload["subject"]  # {{ sender.company }} rendered
    assert "{{" not in text and "{{" not in html
    assert token in text and "Unsubscribe" in html
    assert payload["categories"] == ["lead"]
    assert payload["from"] == {"email": "team@example.com", "name": "Drip Team"}
    assert payload["reply_to"] == {"email": "replies@example.com"}

    session.refresh(message)
    assert message.status == "sent" and message.provider_message_id
    assert message.template_version == campaigns["lead"].steps[0].version
    assert message.html == html and message.headers == headers
    assert "email_sent" in _kinds(session, contact)


def test_sandbox_escape_fails_the_message_safely_and_the_batch_goes_on(
    session, make_contact, backend, settings, fake_sendgrid, campaigns
):
    bad = make_contact("lead")
    good = make_contact("client")
    campaigns["lead"].steps[0].body_html = "<p>{{ ''.__class__.__mro__ }}</p>"
    session.commit()
    bad_message, good_message = _tick(session, bad), _tick(session, good)

    report = deliver_messages(session, [bad_message.id, good_message.id], backend, settings)

    assert report.failed == [bad_message.id] and report.sent == [good_message.id]
    session.refresh(bad_message)
    assert bad_message.status == "failed" and "cannot be rendered" in bad_message.error
    assert str(bad_message.id) not in fake_sendgrid.deliveries
    assert "email_failed" in _kinds(session, bad)


def test_sent_step_advances_to_the_next_one_and_the_last_completes(
    session, make_contact, backend, settings, campaigns
):
    contact = make_contact("client")
    campaign = campaigns["client"]
    enrollment = session.scalar(sa.select(Enrollment).where(Enrollment.contact_id == contact.id))

    for position in range(1, len(campaign.steps) + 1):
        message = _tick(session, contact)
        assert message.step_position == position
        deliver_messages(session, [message.id], backend, settings)
        session.refresh(message)
        session.refresh(enrollment)
        if position < len(campaign.steps):
            assert enrollment.current_step == position + 1
            assert enrollment.last_sent_at == message.sent_at
            assert enrollment.next_send_at == send_time_for_step(
                campaign, contact, campaign.steps[position].delay_days, message.sent_at
            )
    assert enrollment.status == "completed" and enrollment.next_send_at is None
    assert session.scalar(sa.select(sa.func.count(Message.id))) == len(campaign.steps)


def test_the_timeline_names_a_sent_email_by_the_subject_its_contact_got(
    session, make_contact, backend, settings, campaigns
):
    """Once: 'Sent Email 6 of Lead “Worth a 20-minute call, Ada?”', not the sample
    contact's subject ('..., Alex?') followed by the real one."""
    contact = make_contact("lead", first_name="Ada")
    enrollment = session.scalar(sa.select(Enrollment).where(Enrollment.contact_id == contact.id))
    enrollment.current_step = 6
    session.commit()
    message = _tick(session, contact)
    deliver_messages(session, [message.id], backend, settings)
    detail = session.scalar(
        sa.select(Activity.detail).where(
            Activity.contact_id == contact.id, Activity.kind == "email_sent"
        )
    )
    assert detail == "Sent Email 6 of Lead “Worth a 20-minute call, Ada?”"


def test_contact_unsubscribed_between_tick_and_send_is_skipped(
    session, make_contact, backend, settings, fake_sendgrid
):
    contact = make_contact("lead")
    message = _tick(session, contact)
    unsubscribe(session, contact, source="test")
    session.commit()

    report = deliver_messages(session, [message.id], backend, settings)

    session.refresh(message)
    assert report.skipped == [message.id] and message.status == "skipped"
    assert "unsubscribed" in message.error
    assert fake_sendgrid.deliveries == {}
    assert "email_skipped" in _kinds(session, contact)


def test_suppressed_address_is_skipped_and_its_enrollment_stopped(
    session, make_contact, backend, settings, fake_sendgrid
):
    contact = make_contact("lead")
    message = _tick(session, contact)
    session.add(Suppression(email=contact.email.lower(), reason="bounced", source="test"))
    session.commit()

    deliver_messages(session, [message.id], backend, settings)

    session.refresh(message)
    enrollment = session.get(Enrollment, message.enrollment_id)
    assert message.status == "skipped" and enrollment.status == "stopped"
    assert fake_sendgrid.deliveries == {}


def test_paused_campaign_skips_then_requeues_the_same_row_when_resumed(
    session, make_contact, backend, settings, fake_sendgrid, campaigns
):
    contact = make_contact("lead")
    message = _tick(session, contact)
    campaigns["lead"].status = "paused"
    session.commit()

    deliver_messages(session, [message.id], backend, settings)
    session.refresh(message)
    assert message.status == "skipped" and fake_sendgrid.deliveries == {}

    campaigns["lead"].status = "active"
    session.commit()
    enqueued: list[int] = []
    run_tick(session, enqueued.extend, now=utcnow())
    assert enqueued == [message.id]
    deliver_messages(session, [message.id], backend, settings)
    assert fake_sendgrid.deliveries == {str(message.id): 1}


def test_a_sent_message_is_never_delivered_again(
    session, make_contact, backend, settings, fake_sendgrid
):
    contact = make_contact("lead")
    message = _tick(session, contact)
    deliver_messages(session, [message.id], backend, settings)

    again = deliver_messages(session, [message.id, message.id], backend, settings)

    assert again.not_claimed == [message.id, message.id]
    assert fake_sendgrid.deliveries == {str(message.id): 1}


def test_unsubscribe_suppresses_stops_everything_and_is_idempotent(session, make_contact):
    contact = make_contact("lead")

    first = unsubscribe(session, contact.email.upper(), source="link")
    session.commit()
    second = unsubscribe(session, contact.email, source="link")
    session.commit()

    assert first.already is False and first.stopped == 1
    assert second.already is True and second.stopped == 0
    assert contact.email_status == "unsubscribed"
    assert session.scalar(sa.select(Suppression.email)) == contact.email.lower()
    assert _kinds(session, contact).count("unsubscribed") == 1
    assert all(e.status == "stopped" for e in contact.enrollments)


def test_unsubscribe_token_round_trips_and_refuses_tampering(app):
    token = make_unsubscribe_token(42, "Ann@Example.com")
    assert read_unsubscribe_token(token) == (42, "ann@example.com")
    with pytest.raises(InvalidUnsubscribeToken):
        read_unsubscribe_token(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
    forged = make_unsubscribe_token(43, "ann@example.com", secret_key="another key")
    with pytest.raises(InvalidUnsubscribeToken):
        read_unsubscribe_token(forged)


def test_outbox_is_the_backend_without_an_api_key_and_keeps_the_rendered_email(
    session, make_contact, settings
):
    assert isinstance(backend_from_settings(Settings(sendgrid_api_key=None)), OutboxBackend)
    contact = make_contact("lead")
    message = _tick(session, contact)

    deliver_messages(session, [message.id], OutboxBackend(), settings)

    session.refresh(message)
    assert message.status == "sent" and message.provider_message_id == f"outbox-{message.id}"
    assert message.subject and "Unsubscribe" in message.html
    assert message.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_admin_actions_follow_the_state_machine(session, make_contact, settings):
    contact = make_contact("lead")
    message = _tick(session, contact)
    with pytest.raises(DeliveryActionError):
        retry_failed(session, message, actor="admin")

    message.status = "in_doubt"
    session.commit()
    mark_sent(session, message, actor="admin")
    session.commit()
    enrollment = session.get(Enrollment, message.enrollment_id)
    assert message.status == "sent" and enrollment.current_step == 2

    other = make_contact("client")
    second = _tick(session, other)
    second.status = "in_doubt"
    session.commit()
    resend_in_doubt(session, second, actor="admin")
    session.commit()
    assert second.status == "queued"
    second.status = "failed"
    session.commit()
    retry_failed(session, second, actor="admin")
    session.commit()
    assert second.status == "queued"
    deliver_messages(session, [second.id], OutboxBackend(), settings)
    session.refresh(second)
    assert second.status == "sent"
    assert {"email_marked_sent", "email_resent", "email_retried"} <= set(
        _kinds(session, contact) + _kinds(session, other)
    )
