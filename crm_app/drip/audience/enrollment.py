"""Enrolment rules: who walks through which campaign (enrol, by type, on a type
change) and the goals that end it. Stopping and completing: ending.py; moving from one
email to the next: progress.py.

Each function writes its activity row in the caller's transaction, so the
timeline never disagrees with the enrolments. Callers commit.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from crm_app.drip.audience.eligibility import mailing_block_reason
from crm_app.drip.audience.ending import stop
from crm_app.drip.audience.errors import EnrollmentConflict, EnrollmentError
from crm_app.drip.audience.reentry import EntryPlan, plan_entry
from crm_app.drip.campaigns.naming import step_name
from crm_app.drip.common.activity import record_activity
from crm_app.drip.common.labels import enrollment_source_label
from crm_app.drip.experiments.goals import GOAL_NAME_MAX, exit_on_goal_event, exit_on_type
from crm_app.drip.team.audit import record_audit
from crm_app.models import CONTACT_TYPES, Campaign, Contact, ContactGoal, Enrollment, utcnow


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
    restart: bool = False,
    now: datetime | None = None,
) -> Enrollment:
    """Enrol a contact in a campaign, or raise EnrollmentError saying why not.

    Where it starts follows the campaign's re-entry rule (reentry.plan_entry): a
    contact enrolled before resumes after the emails it already got, restarts only
    with `restart=True` (RestartNeedsConfirmation lists what would repeat), or is
    refused."""
    now = now or utcnow()
    if campaign.status != "active":
        raise EnrollmentError(f"{campaign.name} is {campaign.status}: it takes no new enrolments.")
    if not campaign.steps:
        raise EnrollmentError(f"{campaign.name} has no emails yet.")
    blocked = mailing_block_reason(session, contact)
    if blocked:
        raise EnrollmentError(f"{contact.full_name} cannot be enrolled: {blocked}.")
    if active_enrollment(session, contact, campaign) is not None:
        raise EnrollmentConflict(f"{contact.full_name} is already enrolled in {campaign.name}.")
    plan = plan_entry(session, contact, campaign, restart=restart, now=now)

    session.flush()  # nothing else pending may fail inside the savepoint below
    enrollment = Enrollment(
        contact_id=contact.id,
        campaign_id=campaign.id,
        status="active",
        current_step_id=plan.step.id,
        entry=plan.entry,
        source=source,
        enrolled_by=actor,
        enrolled_at=now,
        next_send_at=plan.next_send_at,
    )
    try:
        # The partial unique index is the last word when two requests race.
        with session.begin_nested():
            session.add(enrollment)
            session.flush()
    except IntegrityError:
        raise EnrollmentConflict(
            f"{contact.full_name} is already enrolled in {campaign.name}."
        ) from None
    record_activity(
        session,
        contact,
        "enrolled",
        f"Enrolled in {campaign.name} ({enrollment_source_label(source)}){entry_note(plan)}",
        actor=actor,
        campaign=campaign,
        enrollment=enrollment,
    )
    summary = f"Enrolled {contact.full_name} in {campaign.name} ({source})"
    record_audit(session, actor, "enrollment.created", "enrollment", enrollment.id, summary)
    return enrollment


def entry_note(plan: EntryPlan) -> str:
    """What the timeline adds to "Enrolled in ..." for an enrolment that is not the first."""
    if plan.entry == "resumed":
        return f", resuming at {step_name(plan.step)}"
    if plan.entry == "restarted":
        return ", restarting at email 1"
    return ""


def enroll_by_type(
    session,
    contact: Contact,
    *,
    actor: str,
    source: str = "type",
    restart: bool = False,
    now: datetime | None = None,
) -> Enrollment:
    campaign = campaign_for_type(session, contact.contact_type)
    if campaign is None:
        raise EnrollmentError(f"No campaign is mapped to the type {contact.contact_type}.")
    return enroll(session, contact, campaign, actor=actor, source=source, restart=restart, now=now)


def enroll_by_type_or_note(
    session,
    contact: Contact,
    *,
    actor: str,
    source: str,
    restart: bool = False,
    now: datetime | None = None,
) -> Enrollment | None:
    """Enrol by type; a refusal (no campaign, paused, suppressed, a restart nobody
    confirmed...) is recorded on the timeline instead of raised: the change that
    triggered it (a create, a type switch, an import) goes through either way. The row
    names the campaign: when a paused one resumes, its refused contacts are enrolled
    (crm_app/drip/audience/waiting.py)."""
    try:
        return enroll_by_type(
            session, contact, actor=actor, source=source, restart=restart, now=now
        )
    except EnrollmentError as refused:
        campaign = campaign_for_type(session, contact.contact_type)
        record_activity(
            session, contact, "not_enrolled", str(refused), actor=actor, campaign=campaign
        )
        return None


def auto_enroll(
    session, contact: Contact, *, actor: str, now: datetime | None = None
) -> Enrollment | None:
    """On create: enrol by type, or note why not."""
    return enroll_by_type_or_note(session, contact, actor=actor, source="auto", now=now)


def change_contact_type(
    session, contact: Contact, new_type: str, *, actor: str, now: datetime | None = None
) -> Enrollment | None:
    """Stop the enrolment mapped to the old type and enrol in the new type's campaign."""
    if new_type not in CONTACT_TYPES:
        raise EnrollmentError(
            f"Unknown contact type {new_type!r}: use one of {', '.join(CONTACT_TYPES)}."
        )
    old_type = _stored_type_locked(session, contact)
    if new_type == old_type:
        contact.contact_type = new_type
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
    # Campaigns aiming at this type end as converted first (then nothing is left to stop).
    exit_on_type(session, contact, new_type, actor=actor, now=now)
    old_campaign = campaign_for_type(session, old_type)
    if old_campaign is not None:
        current = active_enrollment(session, contact, old_campaign)
        if current is not None:
            stop(session, current, reason=f"type changed to {new_type}", actor=actor, now=now)
    return enroll_by_type_or_note(session, contact, actor=actor, source="type_change", now=now)


def _stored_type_locked(session, contact: Contact) -> str:
    """The contact's type as stored, under the row's lock (PostgreSQL; SQLite's write
    lock) until the commit. Of two type changes at once (lead -> prospect, lead ->
    client) the second waits for the first, then stops the type it left (prospect), not
    the one both were shown: else the contact stayed in both new types' campaigns."""
    contacts = Contact.__table__
    return session.execute(
        sa.update(contacts)
        .where(contacts.c.id == contact.id)
        .values(contact_type=contacts.c.contact_type)
        .returning(contacts.c.contact_type)
    ).scalar_one()


def record_goal(
    session, contact: Contact, name: str, *, actor: str, now: datetime | None = None
) -> ContactGoal:
    """A goal event (demo booked, contract signed...) that counts as conversion."""
    label = " ".join(name.split())[:GOAL_NAME_MAX]
    if not label:
        raise EnrollmentError('Name the goal, for example "demo booked".')
    goal = ContactGoal(
        contact_id=contact.id, name=f"goal:{label}", occurred_at=now or utcnow(), actor=actor
    )
    session.add(goal)
    record_activity(session, contact, "goal", f"Goal reached: {label}", actor=actor)
    exit_on_goal_event(session, contact, label, actor=actor, now=goal.occurred_at)
    return goal
