"""Enrolment by type for many contacts at once (a CSV import's chunk).

The same rules, enrolment rows and timeline rows as `enrollment.enroll_by_type_or_note`
(and, for a type switch, `enrollment.change_contact_type`), written with a few
statements per chunk instead of several per contact. tests/test_bulk_enrollment.py
runs both on the same cases. Callers commit.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from crm_app.drip.audience.eligibility import mailing_block_reason, suppression_reasons
from crm_app.drip.audience.ending import StopOrder, stop_many
from crm_app.drip.audience.enrollment import entry_note
from crm_app.drip.audience.errors import EnrollmentError
from crm_app.drip.audience.reentry import EntryPlan, plan_entry
from crm_app.drip.campaigns.schedule import send_time_for_step
from crm_app.drip.common.activity import activity_row, record_activities
from crm_app.drip.common.labels import enrollment_source_label
from crm_app.drip.common.sql import in_values, insert_rows
from crm_app.drip.experiments.goals import exit_on_type_many
from crm_app.models import Campaign, Contact, ContactGoal, Enrollment, utcnow

ENROLLMENTS = Enrollment.__table__


@dataclass(frozen=True)
class ContactFacts:
    """What enrolment reads of a contact, without loading it as an ORM object."""

    id: int
    email: str
    first_name: str
    last_name: str
    contact_type: str
    timezone: str
    email_status: str = "ok"
    erased_at: datetime | None = None  # an import never writes to an erased contact

    # The one definition of a contact's display name (refusals quote it).
    full_name = property(Contact.full_name.fget)


# The Contact columns a ContactFacts is read from, in the order of its fields.
FACT_COLUMNS = (
    Contact.id, Contact.email, Contact.first_name, Contact.last_name, Contact.contact_type,
    Contact.timezone, Contact.email_status, Contact.erased_at,
)  # fmt: skip


@dataclass
class BulkEnrollment:
    enrolled: dict[int, int] = field(default_factory=dict)  # contact id -> enrolment id
    refused: dict[int, str] = field(default_factory=dict)  # contact id -> why not


def refusal(
    session,
    campaign: Campaign | None,
    contact: ContactFacts,
    *,
    suppressions: dict[str, str],
    active: Collection[tuple[int, int]],
) -> str | None:
    """Why `enroll_by_type` would refuse this contact, in its words, or None.

    The refusal rules of bulk enrolment live here only, in `enroll`'s order: no
    campaign for the type, campaign not active, no steps, not mailable (eligibility's
    rule), already active. `active`: (contact id, campaign id) pairs enrolled now."""
    if campaign is None:
        return f"No campaign is mapped to the type {contact.contact_type}."
    if campaign.status != "active":
        return f"{campaign.name} is {campaign.status}: it takes no new enrolments."
    if not campaign.steps:
        return f"{campaign.name} has no emails yet."
    blocked = mailing_block_reason(session, contact, suppressions=suppressions)
    if blocked:
        return f"{contact.full_name} cannot be enrolled: {blocked}."
    if (contact.id, campaign.id) in active:
        return f"{contact.full_name} is already enrolled in {campaign.name}."
    return None


def _campaigns_by_type(session, types: set[str]) -> dict[str, Campaign]:
    campaigns = session.scalars(
        sa.select(Campaign)
        .where(Campaign.contact_type.in_(sorted(types)))
        .options(selectinload(Campaign.steps))
    )
    return {campaign.contact_type: campaign for campaign in campaigns}


def _enrolled_before(session, contact_ids: list[int]) -> set[tuple[int, int]]:
    """(contact id, campaign id) of every enrolment the contacts ever had: where the
    campaign's re-entry rule decides, rather than a first enrolment."""
    rows = session.execute(
        sa.select(ENROLLMENTS.c.contact_id, ENROLLMENTS.c.campaign_id)
        .where(in_values(session, ENROLLMENTS.c.contact_id, contact_ids))
        .distinct()
    )
    return {tuple(row) for row in rows}


def _entry_plan(
    session, campaign: Campaign, contact: ContactFacts, earlier: set[tuple[int, int]], now
) -> EntryPlan | str:
    """Where the contact starts (a first enrolment at email 1, without a query), or why
    the re-entry rule refuses it (an automatic path never confirms a restart)."""
    if (contact.id, campaign.id) not in earlier:
        first = campaign.steps[0]
        return EntryPlan(
            first, send_time_for_step(campaign, contact, first.delay_days, now), "first"
        )
    try:
        return plan_entry(session, contact, campaign, restart=False, now=now)
    except EnrollmentError as refused:
        return str(refused)


def _active_enrollments(session, contact_ids: list[int]) -> list[tuple[int, int, int]]:
    """(enrolment id, contact id, campaign id) of the contacts' active enrolments."""
    rows = session.execute(
        sa.select(ENROLLMENTS.c.id, ENROLLMENTS.c.contact_id, ENROLLMENTS.c.campaign_id).where(
            ENROLLMENTS.c.status == "active",
            in_values(session, ENROLLMENTS.c.contact_id, contact_ids),
        )
    )
    return [tuple(row) for row in rows]


def enroll_by_type_many(
    session,
    contacts: Sequence[ContactFacts],
    *,
    actor: str,
    source: str,
    now: datetime | None = None,
    note_refusals: bool = True,
) -> BulkEnrollment:
    """`enroll_by_type_or_note` for each contact: enrol it in its type's campaign, or
    write a "not_enrolled" row saying why not (unless `note_refusals` is False: a
    contact refused again on a resume was noted already). Five statements whatever the
    count."""
    now = now or utcnow()
    if not contacts:
        return BulkEnrollment()
    campaigns = _campaigns_by_type(session, {c.contact_type for c in contacts})
    suppressions = suppression_reasons(session, [c.email for c in contacts])
    ids = [c.id for c in contacts]
    active = {(c, k) for _, c, k in _active_enrollments(session, ids)}
    earlier = _enrolled_before(session, ids)
    # In the contacts' order: (contact, campaign, where it starts or why not).
    decisions: list[tuple[ContactFacts, Campaign | None, EntryPlan | str]] = []
    for contact in contacts:
        campaign = campaigns.get(contact.contact_type)
        outcome = refusal(session, campaign, contact, suppressions=suppressions, active=active)
        if outcome is None:
            outcome = _entry_plan(session, campaign, contact, earlier, now)
        if isinstance(outcome, EntryPlan):
            active.add((contact.id, campaign.id))  # a contact listed twice is enrolled once
        decisions.append((contact, campaign, outcome))
    rows = [
        _enrollment_row(campaign, contact, plan, actor=actor, source=source, now=now)
        for contact, campaign, plan in decisions
        if isinstance(plan, EntryPlan)
    ]
    inserted = insert_rows(session, ENROLLMENTS, rows, returning=("id", "contact_id"))
    enrolled = {contact_id: enrollment_id for enrollment_id, contact_id in inserted}
    record_activities(
        session,
        [
            _activity(*decision, enrolled, actor=actor, source=source, now=now)
            for decision in decisions
            if note_refusals or isinstance(decision[2], EntryPlan)
        ],
    )
    refused = {
        c.id: outcome
        for c, _, outcome in decisions
        if isinstance(outcome, str) and c.id not in enrolled
    }
    return BulkEnrollment(enrolled=enrolled, refused=refused)


def _enrollment_row(
    campaign: Campaign,
    contact: ContactFacts,
    plan: EntryPlan,
    *,
    actor: str,
    source: str,
    now: datetime,
) -> dict:
    """The row `enroll` adds: active at the planned step, due when it may go out."""
    return {
        "contact_id": contact.id,
        "campaign_id": campaign.id,
        "status": "active",
        "current_step_id": plan.step.id,
        "entry": plan.entry,
        "next_send_at": plan.next_send_at,
        "source": source,
        "enrolled_by": actor,
        "enrolled_at": now,
        "last_sent_at": None,
        "ended_at": None,
        "end_reason": "",
    }


def _activity(
    contact: ContactFacts,
    campaign: Campaign | None,
    outcome: EntryPlan | str,
    enrolled: dict[int, int],
    *,
    actor: str,
    source: str,
    now: datetime,
) -> dict:
    """The timeline row `enroll` ("enrolled") or `enroll_by_type_or_note`
    ("not_enrolled") writes."""
    if isinstance(outcome, str):
        # Named, as enroll_by_type_or_note does: a paused campaign enrols these on resume.
        return activity_row(
            contact.id,
            "not_enrolled",
            outcome,
            actor=actor,
            campaign_id=campaign.id if campaign is not None else None,
            enrollment_id=None,
            created_at=now,
        )
    return activity_row(
        contact.id,
        "enrolled",
        f"Enrolled in {campaign.name} ({enrollment_source_label(source)}){entry_note(outcome)}",
        actor=actor,
        campaign_id=campaign.id,
        enrollment_id=enrolled[contact.id],
        created_at=now,
    )


def switch_types_many(
    session,
    switches: Sequence[tuple[ContactFacts, str]],
    *,
    actor: str,
    now: datetime | None = None,
) -> BulkEnrollment:
    """`change_contact_type` for contacts whose type the caller has already changed in
    the database (each ContactFacts carries the new type, the str is the old one): the
    "type_changed" row and the conversion goal, the old type's campaign stopped, then
    enrolment by the new type (or a note why not)."""
    now = now or utcnow()
    if not switches:
        return BulkEnrollment()
    record_activities(
        session,
        [
            activity_row(
                contact.id,
                "type_changed",
                f"Type changed from {old_type} to {contact.contact_type}",
                actor=actor,
                campaign_id=None,
                enrollment_id=None,
                created_at=now,
            )
            for contact, old_type in switches
        ],
    )
    goals = [
        {"contact_id": c.id, "name": f"type:{c.contact_type}", "occurred_at": now, "actor": actor}
        for c, _ in switches
    ]
    insert_rows(session, ContactGoal.__table__, goals)
    # Campaigns aiming at the new type end as converted first (as change_contact_type).
    exit_on_type_many(session, [(c.id, c.contact_type) for c, _ in switches], actor=actor, now=now)
    _stop_old_type_campaigns(session, switches, actor=actor, now=now)
    contacts = [contact for contact, _ in switches]
    return enroll_by_type_many(session, contacts, actor=actor, source="type_change", now=now)


def _stop_old_type_campaigns(
    session, switches: Sequence[tuple[ContactFacts, str]], *, actor: str, now: datetime
) -> None:
    """`stop` on each contact's active enrolment in its old type's campaign."""
    old_campaigns = _campaigns_by_type(session, {old_type for _, old_type in switches})
    wanted = {
        (contact.id, old_campaigns[old_type].id): (contact, old_campaigns[old_type])
        for contact, old_type in switches
        if old_type in old_campaigns
    }
    orders = []
    active = _active_enrollments(session, [contact.id for contact, _ in switches])
    for enrollment_id, contact_id, campaign_id in active:
        if (contact_id, campaign_id) in wanted:
            contact, campaign = wanted[(contact_id, campaign_id)]
            reason = f"type changed to {contact.contact_type}"
            orders.append(
                StopOrder(enrollment_id, contact.id, contact.full_name, campaign.id,
                          campaign.name, reason)
            )  # fmt: skip
    stop_many(session, orders, actor=actor, now=now)
