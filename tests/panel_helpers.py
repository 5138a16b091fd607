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
