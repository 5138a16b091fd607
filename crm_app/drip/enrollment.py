"""Enrolment rules: who walks through which campaign, and when they stop.

Each function writes its activity row in the caller's transaction, so the
timeline never disagrees with the enrolments. Callers commit.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from crm_app.drip.activity import record_activity
from crm_app.drip.schedule import send_time_for_step
from crm_app.models import Campaign, Contact, ContactGoal, Enrollment, Suppression, utcnow


class EnrollmentError(Exception):
    """A rule refused the action; the message is meant for the user."""


def mailing_block_reason(session, contact: Contact) -> str | None:
    """Why this contact may not be mailed, or None. The one place this rule lives."""
    if contact.email_status != "ok":
        return f"the contact is {contact.email_status}"
    suppressed = session.scalar(
        sa.select(Suppression.reason).where(Suppression.email == contact.email.lower())
    )
    if suppressed is not None:
        return f"the address is on the suppression list ({suppressed})"
    return None


def campaign_for_type(session, contact_type: str) -> Campaign | None:
    return session.scalar(sa.select(Campaign).where(Campaign.contact_type == contact_type))


def active_enrollment(session, contact: Contact, campaign: Campaign) -> Enrollment | None:
    return session.scalar(
        sa.select(Enrollment).where(
            Enrollment.contact_id == contact.id,
            Enrollment.campaign_id == campaign.id,
            Enrollment.status == "active",
        )
    )


def enroll(
    session,
    contact: Contact,
    campaign: Campaign,
    *,
    actor: str,
    source: str = "manual",
    now: datetime | None = None,
) -> Enrollment:
    """Enrol a contact in a campaign, or raise EnrollmentError saying why not."""
    now = now or utcnow()
    if campaign.status != "active":
        raise EnrollmentError(f"{campaign.name} is {campaign.status}: it takes no new enrolments.")
    if not campaign.steps:
        raise EnrollmentError(f"{campaign.name} has no emails yet.")
    blocked = mailing_block_reason(session, contact)
    if blocked:
        raise EnrollmentError(f"{contact.full_name} cannot be enrolled: {blocked}.")
    if active_enrollment(session, contact, campaign) is not None:
        raise EnrollmentError(f"{contact.full_name} is already enrolled in {campaign.name}.")

    session.flush()  # nothing else pending may fail inside the savepoint below
    enrollment = Enrollment(
        contact_id=contact.id,
        campaign_id=campaign.id,
        status="active",
        current_step=1,
        source=source,
        enrolled_by=actor,
        enrolled_at=now,
        next_send_at=send_time_for_step(campaign, contact, campaign.steps[0].delay_days, now),
    )
    try:
        # The partial unique index is the last word when two requests race.
        with session.begin_nested():
            session.add(enrollment)
            session.flush()
    except IntegrityError:
        raise EnrollmentError(
            f"{contact.full_name} is already enrolled in {campaign.name}."
        ) from None
    record_activity(
        session,
        contact,
        "enrolled",
        f"Enrolled in {campaign.name} ({source})",
        actor=actor,
        campaign=campaign,
        enrollment=enrollment,
    )
    return enrollment


def enroll_by_type(
    session, contact: Contact, *, actor: str, source: str = "type", now: datetime | None = None
) -> Enrollment:
    campaign = campaign_for_type(session, contact.contact_type)
    if campaign is None:
        raise EnrollmentError(f"No campaign is mapped to the type {contact.contact_type}.")
    return enroll(session, contact, campaign, actor=actor, source=source, now=now)


def auto_enroll(
    session, contact: Contact, *, actor: str, now: datetime | None = None
) -> Enrollment | None:
    """On create: enrol by type; a refusal is recorded on the timeline, not raised."""
    try:
        return enroll_by_type(session, contact, actor=actor, source="auto", now=now)
    except EnrollmentError as refused:
        record_activity(session, contact, "not_enrolled", str(refused), actor=actor)
        return None


def stop(
    session,
    enrollment: Enrollment,
    *,
    reason: str,
    actor: str,
    now: datetime | None = None,
) -> Enrollment:
    if enrollment.status != "active":
        raise EnrollmentError(f"This enrolment has already ended ({enrollment.end_reason}).")
    enrollment.status = "stopped"
    enrollment.end_reason = reason
    enrollment.ended_at = now or utcnow()
    enrollment.next_send_at = None
    record_activity(
        session,
        enrollment.contact,
        "stopped",
        f"Stopped {enrollment.campaign.name}: {reason}",
        actor=actor,
        campaign=enrollment.campaign,
        enrollment=enrollment,
    )
    return enrollment


def active_enrollments(session, contact: Contact) -> list[Enrollment]:
    return list(
        session.scalars(
            sa.select(Enrollment)
            .where(Enrollment.contact_id == contact.id, Enrollment.status == "active")
            .order_by(Enrollment.enrolled_at)
        )
    )


def stop_all(
    session, contact: Contact, *, reason: str, actor: str, now: datetime | None = None
) -> int:
    stopped = 0
    for enrollment in active_enrollments(session, contact):
        stop(session, enrollment, reason=reason, actor=actor, now=now)
        stopped += 1
    return stopped


def complete(session, enrollment: Enrollment, *, now: datetime | None = None) -> Enrollment:
    """The last step went out: the enrolment ends as completed."""
    enrollment.status = "completed"
    enrollment.end_reason = "completed all steps"
    enrollment.ended_at = now or utcnow()
    enrollment.next_send_at = None
    record_activity(
        session,
        enrollment.contact,
        "completed",
        f"Completed {enrollment.campaign.name}",
        actor="system:worker",
        campaign=enrollment.campaign,
        enrollment=enrollment,
    )
    return enrollment


def change_contact_type(
    session, contact: Contact, new_type: str, *, actor: str, now: datetime | None = None
) -> Enrollment | None:
    """Stop the enrolment mapped to the old type and enrol in the new type's campaign."""
    old_type = contact.contact_type
    if new_type == old_type:
        return None
    now = now or utcnow()
    contact.contact_type = new_type
    record_activity(
        session, contact, "type_changed", f"Type changed from {old_type} to {new_type}", actor=actor
    )
    # A later type is what conversion is measured by (lead -> prospect -> client).
    session.add(
        ContactGoal(contact_id=contact.id, name=f"type:{new_type}", occurred_at=now, actor=actor)
    )
    old_campaign = campaign_for_type(session, old_type)
    if old_campaign is not None:
        current = active_enrollment(session, contact, old_campaign)
        if current is not None:
            stop(session, current, reason=f"type changed to {new_type}", actor=actor, now=now)
    try:
        return enroll_by_type(session, contact, actor=actor, source="type_change", now=now)
    except EnrollmentError as refused:
        record_activity(session, contact, "not_enrolled", str(refused), actor=actor)
        return None


def record_goal(
    session, contact: Contact, name: str, *, actor: str, now: datetime | None = None
) -> ContactGoal:
    """A goal event (demo booked, contract signed...) that counts as conversion."""
    label = " ".join(name.split())[:90]
    if not label:
        raise EnrollmentError('Name the goal, for example "demo booked".')
    goal = ContactGoal(
        contact_id=contact.id, name=f"goal:{label}", occurred_at=now or utcnow(), actor=actor
    )
    session.add(goal)
    record_activity(session, contact, "goal", f"Goal reached: {label}", actor=actor)
    return goal


def advance(
    session, enrollment: Enrollment, *, sent_at: datetime, now: datetime | None = None
) -> Enrollment:
    """The current step went out: schedule the next one, or complete after the last.

    The delay counts from the moment the email went out, in the contact's time
    zone, and lands inside the campaign's send window.
    """
    enrollment.current_step += 1
    enrollment.last_sent_at = sent_at
    steps = enrollment.campaign.steps
    if enrollment.current_step > len(steps):
        return complete(session, enrollment, now=now or sent_at)
    step = steps[enrollment.current_step - 1]
    enrollment.next_send_at = send_time_for_step(
        enrollment.campaign, enrollment.contact, step.delay_days, sent_at
    )
    return enrollment
