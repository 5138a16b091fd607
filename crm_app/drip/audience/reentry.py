"""Re-entry: where a contact enrolled in a campaign again starts, by the campaign's rule.

Applied in one place: `enroll` asks `plan_entry` where every new enrolment starts,
so each path (manual, by type, a type switch back and forth, auto on create, the
API, the CSV import) obeys the same rule:

- resume (the default): at the first step the contact was never sent in this
  campaign (over all its earlier enrolments, read from their messages), its delay
  counted from the last email the contact got here (not before now);
- restart: at email 1, only when the caller confirms (`restart=True`) after being
  shown the emails that would repeat and when (RestartNeedsConfirmation says which);
- never: a second enrolment is refused.

An email counts as received when its message is sent, being sent or in doubt:
whatever may have reached the contact is never repeated without a confirmation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from crm_app.drip.audience.errors import EnrollmentError, Repeat, RestartNeedsConfirmation
from crm_app.drip.campaigns.naming import step_title
from crm_app.drip.campaigns.schedule import send_time_for_step
from crm_app.drip.common.sql import checked_on_found_rows, in_values
from crm_app.drip.common.timezones import zone_or_utc
from crm_app.models import REACHED_STATUSES, Campaign, CampaignStep, Contact, Enrollment, Message

RULE_LABELS = {
    "resume": "Resume: a contact enrolled again continues at the first email it was not sent",
    "restart": "Restart: a contact enrolled again starts at email 1, after a confirmation "
    "that lists the emails it would get again",
    "never": "Never: a contact is enrolled at most once",
}


@dataclass(frozen=True)
class EntryPlan:
    """Where a new enrolment starts, when its first email is due, and how it began."""

    step: CampaignStep
    next_send_at: datetime
    entry: str  # "first", "resumed" or "restarted" (Enrollment.entry)


def received_steps(session, contact_id: int, campaign_id: int) -> dict[int, datetime]:
    """The contact's emails in this campaign that may have reached it, over all its
    enrolments: step id -> when it went (the latest, if more than once)."""
    when = sa.func.coalesce(Message.sent_at, Message.claimed_at, Message.created_at)
    rows = session.execute(
        sa.select(Message.step_id, sa.func.max(when))
        .where(
            Message.contact_id == contact_id,
            Message.campaign_id == campaign_id,
            checked_on_found_rows(Message.status.in_(REACHED_STATUSES)),
            Message.step_id.is_not(None),
        )
        .group_by(Message.step_id)
    )
    return {step_id: at for step_id, at in rows}


def received_in_earlier_enrollments(
    session, resumed: list[tuple[int, int, int]]
) -> dict[int, datetime]:
    """For resumed enrolments due to send a step, given as (enrolment id, contact id,
    step id): those whose contact already got that step in an EARLIER enrolment of
    the campaign (the steps were reordered since it resumed), with when. The tick
    moves them past it. First enrolments have no earlier emails, and a restarted one
    repeats them by a confirmed choice: only resumed ones are asked about."""
    if not resumed:
        return {}
    when = sa.func.coalesce(Message.sent_at, Message.claimed_at, Message.created_at)
    found: dict[tuple[int, int], list[tuple[int, datetime]]] = {}
    for contact_id, step_id, enrollment_id, at in session.execute(
        sa.select(Message.contact_id, Message.step_id, Message.enrollment_id, when).where(
            in_values(session, Message.contact_id, {contact for _, contact, _ in resumed}),
            in_values(session, Message.step_id, {step for _, _, step in resumed}),
            checked_on_found_rows(Message.status.in_(REACHED_STATUSES)),
        )
    ):
        found.setdefault((contact_id, step_id), []).append((enrollment_id, at))
    received = {}
    for enrollment_id, contact_id, step_id in resumed:
        earlier = [
            at for owner, at in found.get((contact_id, step_id), []) if owner != enrollment_id
        ]
        if earlier:
            received[enrollment_id] = max(earlier)
    return received


def _enrolled_before(session, contact: Contact, campaign: Campaign) -> Enrollment | None:
    return session.scalar(
        sa.select(Enrollment)
        .where(Enrollment.contact_id == contact.id, Enrollment.campaign_id == campaign.id)
        .order_by(Enrollment.enrolled_at.desc(), Enrollment.id.desc())
        .limit(1)
    )


def restart_repeats(
    campaign: Campaign,
    contact: Contact,
    received: dict[int, datetime],
    now: datetime,
    subjects: dict[int, str],
) -> list[Repeat]:
    """The emails a restart now would send again, each with its planned date (every
    delay counted from the email before it, as the tick would) and the subject the
    contact got (`subjects`, by step id; else the step's own name)."""
    repeats, at = [], now
    for step in campaign.steps:
        at = send_time_for_step(campaign, contact, step.delay_days, at)
        if step.id in received:
            subject = subjects.get(step.id) or step_title(step)
            repeats.append(Repeat(step, received[step.id], at, subject))
    return repeats


def received_subjects(session, contact_id: int, campaign_id: int) -> dict[int, str]:
    """The subject of the latest email of each step the contact may have received here:
    what it saw (its own name, its A/B variant), not the sample contact's."""
    when = sa.func.coalesce(Message.sent_at, Message.claimed_at, Message.created_at)
    rows = session.execute(
        sa.select(Message.step_id, Message.subject)
        .where(
            Message.contact_id == contact_id,
            Message.campaign_id == campaign_id,
            checked_on_found_rows(Message.status.in_(REACHED_STATUSES)),
            Message.step_id.is_not(None),
        )
        .order_by(when, Message.id)
    )
    return {step_id: subject for step_id, subject in rows if subject}


def _day(moment: datetime, contact: Contact) -> str:
    return f"{moment.astimezone(zone_or_utc(contact.timezone)):%a %d %b}"


def _confirmation_text(contact: Contact, campaign: Campaign, repeats: list[Repeat]) -> str:
    listed = "; ".join(
        f"email {r.step.position} “{r.subject}” (received {_day(r.received_at, contact)},"
        f" again {_day(r.again_at, contact)})"
        for r in repeats
    )
    return (
        f"{contact.full_name} already received {len(repeats)} email(s) of {campaign.name}, "
        f"which restarts from email 1: {listed}. Confirm the restart to send them again."
    )


def plan_entry(
    session, contact: Contact, campaign: Campaign, *, restart: bool, now: datetime
) -> EntryPlan:
    """Where `contact` starts in `campaign` now, or EnrollmentError saying why it may not
    (RestartNeedsConfirmation when a restart would repeat emails and was not confirmed)."""
    steps = campaign.steps
    earlier = _enrolled_before(session, contact, campaign)
    if earlier is None:
        first = send_time_for_step(campaign, contact, steps[0].delay_days, now)
        return EntryPlan(steps[0], first, "first")
    if campaign.reentry == "never":
        raise EnrollmentError(
            f"{contact.full_name} cannot be enrolled in {campaign.name} again: it takes each "
            f"contact once (re-entry: never), and {contact.full_name} was enrolled on "
            f"{_day(earlier.enrolled_at, contact)} ({earlier.status})."
        )
    received = received_steps(session, contact.id, campaign.id)
    if campaign.reentry == "restart":
        subjects = received_subjects(session, contact.id, campaign.id)
        repeats = restart_repeats(campaign, contact, received, now, subjects)
        if repeats and not restart:
            text = _confirmation_text(contact, campaign, repeats)
            raise RestartNeedsConfirmation(contact, campaign, repeats, text)
        first = send_time_for_step(campaign, contact, steps[0].delay_days, now)
        return EntryPlan(steps[0], first, "restarted")
    if restart:
        raise EnrollmentError(
            f"{campaign.name} never restarts a contact (re-entry: resume): enrolled again, "
            f"{contact.full_name} continues at the first email it was not sent."
        )
    remaining = [step for step in steps if step.id not in received]
    if not remaining:
        raise EnrollmentError(
            f"{contact.full_name} already received every email of {campaign.name}: "
            "there is nothing left to resume."
        )
    after = max(received.values(), default=now)
    due = send_time_for_step(campaign, contact, remaining[0].delay_days, after, not_before=now)
    return EntryPlan(remaining[0], due, "resumed")
