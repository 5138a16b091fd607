"""Enrolment rules: who walks through which campaign, and when they stop.

Each function writes its activity row in the caller's transaction, so the
timeline never disagrees with the enrolments. Callers commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from crm_app.drip.audience.eligibility import mailing_block_reason
from crm_app.drip.audience.errors import EnrollmentConflict, EnrollmentError
from crm_app.drip.audience.reentry import EntryPlan, plan_entry
from crm_app.drip.campaigns.naming import step_name
from crm_app.drip.campaigns.schedule import send_time_for_step
from crm_app.drip.common.activity import activity_row, record_activities, record_activity
from crm_app.drip.common.labels import enrollment_source_label
from crm_app.drip.common.sql import expire_updated, in_values, update_rows
from crm_app.drip.experiments.goals import exit_on_goal_event, exit_on_type
from crm_app.drip.team.audit import record_audit
from crm_app.models import (
    CONTACT_TYPES,
    Campaign,
    CampaignStep,
    Contact,
    ContactGoal,
    Enrollment,
    utcnow,
)


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


def stop(
    session,
    enrollment: Enrollment,
    *,
    reason: str,
    actor: str,
    now: datetime | None = None,
) -> Enrollment:
    if enrollment.status != "active":
        raise EnrollmentConflict(f"This enrolment has already ended ({enrollment.end_reason}).")
    name = enrollment.campaign.name
    summary = _stop_summary(name, enrollment.contact.full_name, reason)
    record_audit(session, actor, "enrollment.stopped", "enrollment", enrollment.id, summary)
    return _end(
        session, enrollment, "stopped", reason, _stop_detail(name, reason), actor=actor, now=now
    )


def _stop_detail(campaign_name: str, reason: str) -> str:
    return f"Stopped {campaign_name}: {reason}"


def _stop_summary(campaign_name: str, contact_name: str, reason: str) -> str:
    return f"Stopped {campaign_name} for {contact_name}: {reason}"


@dataclass(frozen=True)
class StopOrder:
    """One enrolment for `stop_many`, with the names its timeline and audit rows quote."""

    enrollment_id: int
    contact_id: int
    contact_name: str
    campaign_id: int
    campaign_name: str
    reason: str


def stop_many(session, orders: Sequence[StopOrder], *, actor: str, now: datetime) -> set[int]:
    """`stop` for many enrolments with one UPDATE and one INSERT (a webhook batch's
    bounces, an import's type switches). An enrolment another writer ended first is
    left as it is. Returns the ids stopped."""
    if not orders:
        return set()
    table = Enrollment.__table__
    stopped = update_rows(
        session,
        table,
        [{"id": o.enrollment_id, "end_reason": o.reason, "ended_at": now} for o in orders],
        where=lambda r: [table.c.status == "active"],
        values=lambda r: {
            "status": "stopped",
            "end_reason": r.end_reason,
            "ended_at": r.ended_at,
            "next_send_at": None,
        },
    )
    done = [o for o in orders if o.enrollment_id in stopped]
    record_activities(
        session,
        [
            activity_row(
                o.contact_id,
                "stopped",
                _stop_detail(o.campaign_name, o.reason),
                actor=actor,
                campaign_id=o.campaign_id,
                enrollment_id=o.enrollment_id,
                created_at=now,
            )
            for o in done
        ],
    )
    for o in done:
        summary = _stop_summary(o.campaign_name, o.contact_name, o.reason)
        record_audit(session, actor, "enrollment.stopped", "enrollment", o.enrollment_id, summary)
    expire_updated(session, Enrollment, stopped)
    return stopped


def active_stop_orders(
    session, contacts: Mapping[int, str], reason: Mapping[int, str]
) -> list[StopOrder]:
    """A StopOrder for each active enrolment of `contacts` (id -> display name), with
    that contact's `reason`."""
    rows = session.execute(
        sa.select(Enrollment.id, Enrollment.contact_id, Enrollment.campaign_id, Campaign.name)
        .join(Campaign, Campaign.id == Enrollment.campaign_id)
        .where(in_values(session, Enrollment.contact_id, contacts), Enrollment.status == "active")
        .order_by(Enrollment.enrolled_at, Enrollment.id)
    )
    return [
        StopOrder(eid, cid, contacts[cid], campaign_id, name, reason[cid])
        for eid, cid, campaign_id, name in rows
    ]


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
    detail = f"Completed {enrollment.campaign.name}"
    return _end(
        session,
        enrollment,
        "completed",
        "completed all steps",
        detail,
        actor="system:worker",
        now=now,
    )


def _end(
    session,
    enrollment: Enrollment,
    status: str,
    reason: str,
    detail: str,
    *,
    actor: str,
    now: datetime | None,
) -> Enrollment:
    """End an enrolment (stopped or completed) and say so on the timeline."""
    enrollment.status = status
    enrollment.end_reason = reason
    enrollment.ended_at = now or utcnow()
    enrollment.next_send_at = None
    kind = "completed" if status == "completed" else "stopped"
    record_activity(
        session,
        enrollment.contact,
        kind,
        detail,
        actor=actor,
        campaign=enrollment.campaign,
        enrollment=enrollment,
    )
    return enrollment


def change_contact_type(
    session, contact: Contact, new_type: str, *, actor: str, now: datetime | None = None
) -> Enrollment | None:
    """Stop the enrolment mapped to the old type and enrol in the new type's campaign."""
    old_type = contact.contact_type
    if new_type not in CONTACT_TYPES:
        raise EnrollmentError(
            f"Unknown contact type {new_type!r}: use one of {', '.join(CONTACT_TYPES)}."
        )
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
    # Campaigns aiming at this type end as converted first (then nothing is left to stop).
    exit_on_type(session, contact, new_type, actor=actor, now=now)
    old_campaign = campaign_for_type(session, old_type)
    if old_campaign is not None:
        current = active_enrollment(session, contact, old_campaign)
        if current is not None:
            stop(session, current, reason=f"type changed to {new_type}", actor=actor, now=now)
    return enroll_by_type_or_note(session, contact, actor=actor, source="type_change", now=now)


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
    exit_on_goal_event(session, contact, label, actor=actor, now=goal.occurred_at)
    return goal


def step_after(steps: list[CampaignStep], step_id: int | None) -> CampaignStep | None:
    """The step that follows `step_id` in the campaign's order now (None after the last)."""
    ordered = sorted(steps, key=lambda step: step.position)
    for index, step in enumerate(ordered):
        if step.id == step_id:
            return ordered[index + 1] if index + 1 < len(ordered) else None
    return None


def advance(
    session, enrollment: Enrollment, *, sent_at: datetime, now: datetime | None = None
) -> Enrollment:
    """The current step went out: move to the step after it in the campaign's order
    now, or complete after the last.

    The delay counts from the moment the email went out, in the contact's time
    zone, and lands inside the campaign's send window.
    """
    following = step_after(enrollment.campaign.steps, enrollment.current_step_id)
    enrollment.last_sent_at = sent_at
    enrollment.step = following
    if following is None:
        return complete(session, enrollment, now=now or sent_at)
    enrollment.next_send_at = send_time_for_step(
        enrollment.campaign, enrollment.contact, following.delay_days, sent_at
    )
    return enrollment


def skip_step(session, enrollment: Enrollment, *, now: datetime) -> Enrollment:
    """The current step was skipped ("send only if" did not hold): move to the step
    after it, due its delay after now (inside the send window), or complete after
    the last. Unlike `advance`, nothing was sent: last_sent_at stays."""
    following = step_after(enrollment.campaign.steps, enrollment.current_step_id)
    enrollment.step = following
    if following is None:
        return complete(session, enrollment, now=now)
    enrollment.next_send_at = send_time_for_step(
        enrollment.campaign, enrollment.contact, following.delay_days, now
    )
    return enrollment


ENROLLMENTS = Enrollment.__table__


def _step_sequences(session, campaign_ids: set[int]) -> dict[int, list[tuple[int, int]]]:
    """Each campaign's (step id, delay) in order (what `advance` reads from
    campaign.steps): one light query instead of loading the steps with every chunk."""
    steps = CampaignStep.__table__
    sequences: dict[int, list[tuple[int, int]]] = {}
    for campaign_id, step_id, delay_days in session.execute(
        sa.select(steps.c.campaign_id, steps.c.id, steps.c.delay_days)
        .where(in_values(session, steps.c.campaign_id, campaign_ids))
        .order_by(steps.c.campaign_id, steps.c.position)
    ):
        sequences.setdefault(campaign_id, []).append((step_id, delay_days))
    return sequences


def _advance_row(enrollment: Enrollment, sent_at: datetime, sequence: list[tuple[int, int]]):
    """What `advance` would write for this enrolment: the next step, or completion."""
    ids = [step_id for step_id, _ in sequence]
    index = ids.index(enrollment.current_step_id) if enrollment.current_step_id in ids else None
    row = {
        "id": enrollment.id,
        "from_step_id": enrollment.current_step_id,
        "current_step_id": None,
        "last_sent_at": sent_at,
        "next_send_at": None,
        "status": "active",
        "end_reason": None,
        "ended_at": None,
    }
    if index is None or index + 1 >= len(sequence):  # the last step went out: `complete`
        row.update(status="completed", end_reason="completed all steps", ended_at=sent_at)
    else:
        row["current_step_id"], delay = sequence[index + 1]
        row["next_send_at"] = send_time_for_step(
            enrollment.campaign, enrollment.contact, delay, sent_at
        )
    return row


def advance_many(session, sent: list[tuple[Enrollment, datetime]]) -> set[int]:
    """`advance` for many enrolments at once (the delivery worker's chunk): the same
    next step, `next_send_at` and completion, and the same "completed" timeline rows,
    written with one UPDATE and one INSERT instead of through the ORM.

    Each (enrolment, sent_at) moves on only if the database still has it active at
    the step the loaded object shows; returns the ids that moved. The loaded
    objects are not changed (reload them to see the result)."""
    if not sent:
        return set()
    sequences = _step_sequences(session, {e.campaign_id for e, _ in sent})
    rows = [_advance_row(e, at, sequences.get(e.campaign_id, [])) for e, at in sent]
    # Conditional on the step each enrolment was at, so a concurrent stop or move wins.
    moved = update_rows(
        session,
        ENROLLMENTS,
        rows,
        types={"from_step_id": ENROLLMENTS.c.current_step_id.type},
        where=lambda r: [
            ENROLLMENTS.c.status == "active",
            ENROLLMENTS.c.current_step_id == r.from_step_id,
        ],
        values=lambda r: {
            "current_step_id": r.current_step_id,
            "last_sent_at": r.last_sent_at,
            "next_send_at": r.next_send_at,
            "status": r.status,
            "end_reason": sa.func.coalesce(r.end_reason, ENROLLMENTS.c.end_reason),
            "ended_at": sa.func.coalesce(r.ended_at, ENROLLMENTS.c.ended_at),
        },
    )
    completed = {row["id"] for row in rows if row["status"] == "completed"} & moved
    record_activities(
        session,
        [
            activity_row(
                enrollment.contact_id,
                "completed",
                f"Completed {enrollment.campaign.name}",
                actor="system:worker",
                campaign_id=enrollment.campaign_id,
                enrollment_id=enrollment.id,
                created_at=utcnow(),
            )
            for enrollment, _ in sent
            if enrollment.id in completed
        ],
    )
    return moved
