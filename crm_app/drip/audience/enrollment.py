"""Enrolment rules: who walks through which campaign, and when they stop.

Each function writes its activity row in the caller's transaction, so the
timeline never disagrees with the enrolments. Callers commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from crm_app.drip.campaigns.schedule import send_time_for_step
from crm_app.drip.common.activity import activity_row, record_activities, record_activity
from crm_app.drip.common.sql import in_values, is_postgres, json_rows
from crm_app.models import (
    Campaign,
    CampaignStep,
    Contact,
    ContactGoal,
    Enrollment,
    Suppression,
    utcnow,
)


class EnrollmentError(Exception):
    """A rule refused the action; the message is meant for the user."""


def suppression_reasons(session, emails) -> dict[str, str]:
    """{lowercased address: suppression reason} for those of `emails` on the list: one
    query for a whole chunk of messages (pass it to `mailing_block_reason`)."""
    wanted = {email.lower() for email in emails}
    if not wanted:
        return {}
    rows = session.execute(
        sa.select(Suppression.email, Suppression.reason).where(
            in_values(session, Suppression.email, wanted)
        )
    )
    return {email: reason for email, reason in rows}


def mailing_block_reason(
    session, contact: Contact, *, suppressions: Mapping[str, str] | None = None
) -> str | None:
    """Why this contact may not be mailed, or None. The one place this rule lives.

    `suppressions`: the suppression list already read for this contact's address
    (`suppression_reasons`), instead of one query here."""
    if contact.email_status != "ok":
        return f"the contact is {contact.email_status}"
    if suppressions is not None:
        suppressed = suppressions.get(contact.email.lower())
    else:
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


# advance_many's one statement on PostgreSQL: the rows travel as one jsonb parameter.
# Conditional on the step each enrolment was at, so a concurrent stop or move wins.
_ADVANCE_PG = sa.text(
    "UPDATE enrollments AS e SET current_step = r.current_step, last_sent_at = r.last_sent_at,"
    " next_send_at = r.next_send_at, status = r.status,"
    " end_reason = COALESCE(r.end_reason, e.end_reason),"
    " ended_at = COALESCE(r.ended_at, e.ended_at)"
    " FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(id integer, from_step integer,"
    " current_step integer, last_sent_at timestamp, next_send_at timestamp, status text,"
    " end_reason text, ended_at timestamp)"
    " WHERE e.id = r.id AND e.status = 'active' AND e.current_step = r.from_step"
    " RETURNING e.id"
)
_ENROLLMENTS = Enrollment.__table__
_ADVANCE_ONE = (
    sa.update(_ENROLLMENTS)
    .where(
        _ENROLLMENTS.c.id == sa.bindparam("e_id"),
        _ENROLLMENTS.c.status == "active",
        _ENROLLMENTS.c.current_step == sa.bindparam("from_step"),
    )
    .values(
        current_step=sa.bindparam("p_current_step"),
        last_sent_at=sa.bindparam("p_last_sent_at", type_=_ENROLLMENTS.c.last_sent_at.type),
        next_send_at=sa.bindparam("p_next_send_at", type_=_ENROLLMENTS.c.next_send_at.type),
        status=sa.bindparam("p_status"),
        end_reason=sa.func.coalesce(sa.bindparam("p_end_reason"), _ENROLLMENTS.c.end_reason),
        ended_at=sa.func.coalesce(
            sa.bindparam("p_ended_at", type_=_ENROLLMENTS.c.ended_at.type),
            _ENROLLMENTS.c.ended_at,
        ),
    )
)


def advance_many(session, sent: list[tuple[Enrollment, datetime]]) -> set[int]:
    """`advance` for many enrolments at once (the delivery worker's chunk): the same
    next step, `next_send_at` and completion, and the same "completed" timeline rows,
    written with one UPDATE and one INSERT instead of through the ORM.

    Each (enrolment, sent_at) moves on only if the database still has it active at
    the step the loaded object shows; returns the ids that moved. The loaded
    objects are not changed (reload them to see the result)."""
    if not sent:
        return set()
    # Each campaign's step delays, in order (what `advance` reads from campaign.steps):
    # one light query instead of loading the steps as objects with every chunk.
    steps_table = CampaignStep.__table__
    delays: dict[int, list[int]] = {}
    for campaign_id, delay_days in session.execute(
        sa.select(steps_table.c.campaign_id, steps_table.c.delay_days)
        .where(in_values(session, steps_table.c.campaign_id, {e.campaign_id for e, _ in sent}))
        .order_by(steps_table.c.campaign_id, steps_table.c.position)
    ):
        delays.setdefault(campaign_id, []).append(delay_days)
    rows, completing = [], {}
    for enrollment, sent_at in sent:
        steps = delays.get(enrollment.campaign_id, [])
        step_number = enrollment.current_step + 1
        row = {
            "id": enrollment.id,
            "from_step": enrollment.current_step,
            "current_step": step_number,
            "last_sent_at": sent_at,
            "next_send_at": None,
            "status": "active",
            "end_reason": None,
            "ended_at": None,
        }
        if step_number > len(steps):  # the last step went out: `complete`
            row.update(status="completed", end_reason="completed all steps", ended_at=sent_at)
            completing[enrollment.id] = enrollment
        else:
            row["next_send_at"] = send_time_for_step(
                enrollment.campaign, enrollment.contact, steps[step_number - 1], sent_at
            )
        rows.append(row)
    if is_postgres(session):
        moved = set(session.execute(_ADVANCE_PG, {"rows": json_rows(rows)}).scalars())
    else:
        moved = set()
        for row in rows:
            params = {"e_id": row["id"], "from_step": row["from_step"]}
            params.update({f"p_{k}": v for k, v in row.items() if k not in ("id", "from_step")})
            if session.execute(_ADVANCE_ONE, params).rowcount == 1:
                moved.add(row["id"])
    timeline = [
        activity_row(
            enrollment.contact_id,
            "completed",
            f"Completed {enrollment.campaign.name}",
            actor="system:worker",
            campaign_id=enrollment.campaign_id,
            enrollment_id=enrollment.id,
            created_at=utcnow(),
        )
        for enrollment_id, enrollment in completing.items()
        if enrollment_id in moved
    ]
    record_activities(session, timeline)
    return moved
