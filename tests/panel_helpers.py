"""Test helpers for the contact panel's tests (core and web)."""

from __future__ import annotations

from crm_app.models import Contact, Message


def current_email_in_state(session, contact: Contact, status: str) -> Message:
    """The tick took the contact's first enrolment's current step: its email now
    exists in `status` and the enrolment has no next date."""
    enrollment = contact.enrollments[0]
    enrollment.next_send_at = None
    message = Message(
        enrollment_id=enrollment.id,
        step_id=enrollment.current_step_id,
        contact_id=contact.id,
        campaign_id=enrollment.campaign_id,
        status=status,
    )
    session.add(message)
    session.flush()
    return message


def sent_email(session, contact: Contact, *, step: int = 1, **fields) -> Message:
    """An email of the contact's first enrolment, sent (an hour ago unless `sent_at`)."""
    from datetime import timedelta

    from crm_app.models import utcnow

    enrollment = contact.enrollments[0]
    message = Message(
        enrollment_id=enrollment.id,
        step_id=enrollment.campaign.steps[step - 1].id,
        contact_id=contact.id,
        campaign_id=enrollment.campaign_id,
        status="sent",
        to_email=contact.email,
        **{"sent_at": utcnow() - timedelta(hours=1), **fields},
    )
    session.add(message)
    session.commit()
    return message
