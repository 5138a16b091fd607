"""Campaign settings: listing, send windows and pause / resume / archive.

Callers commit. Every enrolment whose schedule or sending state changes because
of an admin's edit gets a timeline row, so a contact's page explains why an
email moved or stopped arriving.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from crm_app.drip.audience.waiting import enroll_waiting
from crm_app.drip.campaigns.schedule import reschedule_campaign
from crm_app.drip.common.activity import activity_row, record_activities, record_activity
from crm_app.drip.common.errors import FieldErrors
from crm_app.drip.experiments.blocks import missing_blocks
from crm_app.drip.team.audit import record_audit
from crm_app.models import (
    CAMPAIGN_STATUSES,
    WEEKDAY_NAMES,
    Campaign,
    CampaignStep,
    Enrollment,
    utcnow,
)


class CampaignSettingsError(FieldErrors):
    """Invalid campaign settings (send window, status)."""


# ---------------------------------------------------------------- listing


@dataclass(frozen=True)
class CampaignSummary:
    campaign: Campaign
    step_count: int
    active_enrollments: int


def list_campaigns(session) -> list[CampaignSummary]:
    """Every campaign with its step and active-enrolment counts, in one query."""
    step_count = (
        sa.select(sa.func.count(CampaignStep.id))
        .where(CampaignStep.campaign_id == Campaign.id)
        .correlate(Campaign)
        .scalar_subquery()
    )
    active_count = (
        sa.select(sa.func.count(Enrollment.id))
        .where(Enrollment.campaign_id == Campaign.id, Enrollment.status == "active")
        .correlate(Campaign)
        .scalar_subquery()
    )
    archived_last = sa.case((Campaign.status == "archived", 1), else_=0)
    rows = session.execute(
        sa.select(Campaign, step_count, active_count).order_by(archived_last, Campaign.id)
    )
    return [CampaignSummary(c, steps or 0, active or 0) for c, steps, active in rows]


def count_active_enrollments(session, campaign: Campaign) -> int:
    return session.scalar(
        sa.select(sa.func.count(Enrollment.id)).where(
            Enrollment.campaign_id == campaign.id, Enrollment.status == "active"
        )
    )


def counts_from_enrollment(position: int) -> bool:
    """The first email's delay counts from the enrolment, every other one's from the
    email before it (the tick schedules them so)."""
    return position == 1


def describe_delay(position: int, delay_days: int) -> str:
    """'3 days after the previous email'; the first step counts from the enrolment."""
    first = counts_from_enrollment(position)
    after = "enrolment" if first else "the previous email"
    if delay_days == 0:
        return "right after enrolment" if first else "same day as the previous email"
    unit = "day" if delay_days == 1 else "days"
    return f"{delay_days} {unit} after {after}"


# ---------------------------------------------------------------- send window


def _parse_time(value: time | str | None) -> time | None:
    if isinstance(value, time):
        return value
    text = (value or "").strip()
    for fmt in ("%H:%M", "%H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).time()
        except ValueError:
            continue
    return None


def validate_send_window(
    weekdays: Iterable[int | str], start: time | str | None, end: time | str | None
) -> tuple[set[int], time, time]:
    """Parsed (weekdays, start, end), or CampaignSettingsError with a message per field."""
    errors: dict[str, str] = {}
    days: set[int] = set()
    for day in weekdays:
        try:
            number = int(day)
        except (TypeError, ValueError):
            number = -1
        if not 0 <= number < len(WEEKDAY_NAMES):
            errors["weekdays"] = f"{day!r} is not a weekday."
            break
        days.add(number)
    if not days and "weekdays" not in errors:
        errors["weekdays"] = "Pick at least one day."
    start_time, end_time = _parse_time(start), _parse_time(end)
    if start_time is None:
        errors["send_start"] = "Enter a start time as HH:MM."
    if end_time is None:
        errors["send_end"] = "Enter an end time as HH:MM."
    if start_time is not None and end_time is not None and start_time >= end_time:
        errors["send_end"] = "The end time must be after the start time."
    if errors:
        raise CampaignSettingsError(errors)
    return days, start_time, end_time


def _active_enrollments(session, campaign: Campaign) -> list[Enrollment]:
    # Contacts loaded up front: the reschedule below reads each one's time zone.
    return list(
        session.scalars(
            sa.select(Enrollment)
            .options(joinedload(Enrollment.contact))
            .where(Enrollment.campaign_id == campaign.id, Enrollment.status == "active")
        )
    )


def update_send_window(
    session,
    campaign: Campaign,
    weekdays: Iterable[int | str],
    start: time | str | None,
    end: time | str | None,
    *,
    actor: str,
    now: datetime | None = None,
) -> int:
    """Validate and save the window, then move active enrolments into it; returns how many moved.

    Raises CampaignSettingsError and changes nothing when the window is invalid.
    """
    days, start_time, end_time = validate_send_window(weekdays, start, end)
    now = now or utcnow()
    enrollments = _active_enrollments(session, campaign)
    before = {e.id: e.next_send_at for e in enrollments}

    campaign.send_days = ",".join(str(d) for d in sorted(days))
    campaign.send_start = start_time
    campaign.send_end = end_time
    campaign.customized = True  # `flask seed` must not undo an admin's edit
    reschedule_campaign(session, campaign, now)

    moved = 0
    for enrollment in enrollments:
        if enrollment.next_send_at != before[enrollment.id]:
            moved += 1
            record_activity(
                session,
                enrollment.contact,
                "rescheduled",
                f"Send window of {campaign.name} changed to {campaign.send_window_label}",
                actor=actor,
                campaign=campaign,
                enrollment=enrollment,
            )
    summary = f"{campaign.name}: send window set to {campaign.send_window_label}"
    record_audit(session, actor, "campaign.send_window", "campaign", campaign.id, summary)
    return moved


# ---------------------------------------------------------------- status

_STATUS_VERBS = {"active": "resumed", "paused": "paused", "archived": "archived"}
# The status changes offered from each status, with their button label. An archived
# campaign is restored to active, never straight to paused.
_STATUS_CHANGES = {
    "active": (("paused", "Pause"), ("archived", "Archive")),
    "paused": (("active", "Resume"), ("archived", "Archive")),
    "archived": (("active", "Restore"),),
}


def status_changes(campaign: Campaign) -> tuple[tuple[str, str], ...]:
    """(new status, button label) for each change the campaign page offers."""
    return _STATUS_CHANGES[campaign.status]


@dataclass(frozen=True)
class StatusChange:
    campaign: Campaign
    # Contacts refused while it was paused or archived, enrolled now that it is active.
    enrolled_waiting: int = 0
    refused_waiting: int = 0

    @property
    def notice(self) -> str:
        text = f"{self.campaign.name} is now {self.campaign.status}."
        if self.enrolled_waiting:
            count = self.enrolled_waiting
            text += (
                f" Enrolled {count} contact{'' if count == 1 else 's'} added while it was stopped."
            )
        if self.refused_waiting:
            text += f" {self.refused_waiting} could not be enrolled (see their timelines)."
        return text


def set_campaign_status(
    session,
    campaign: Campaign,
    status: str,
    *,
    actor: str,
    now: datetime | None = None,
    reason: str = "",
) -> StatusChange:
    """Pause, resume (or restore) or archive a campaign.

    Only an active campaign sends and takes enrolments (enroll() and the tick check the
    status). Paused and archived both keep their enrolments where they are, so either can
    be undone; archived also leaves the campaign list's main section. Back to active, it
    enrols the contacts of its type that it refused meanwhile (audience/waiting.py).
    """
    if status not in CAMPAIGN_STATUSES:
        raise CampaignSettingsError({"status": f"{status!r} is not a campaign status."})
    if status == campaign.status:
        raise CampaignSettingsError({"status": f"{campaign.name} is already {status}."})
    # Only an archived campaign's emails are no live use of their blocks (a block in use
    # cannot be deleted): one taken out of the archive may call a block deleted meanwhile.
    unarchived = campaign.status == "archived"
    missing = missing_blocks(session, campaign) if unarchived else []
    if missing:
        raise CampaignSettingsError(
            {
                "status": "Its emails call content blocks that no longer exist ("
                + "; ".join(missing)
                + "): create them again, or change those emails (stop a test whose "
                "variant calls one), before it sends again."
            }
        )
    previous = campaign.status
    campaign.status = status
    campaign.customized = True
    _record_pause(campaign, status, actor=actor, reason=reason, now=now or utcnow())
    if status == "active":
        enrollments = [(e.id, e.contact_id) for e in _active_enrollments(session, campaign)]
        # Emails that fell due while it was stopped go out at the next window opening,
        # not all at once outside it.
        reschedule_campaign(session, campaign, now or utcnow())
    else:
        enrollments = session.execute(
            sa.select(Enrollment.id, Enrollment.contact_id).where(
                Enrollment.campaign_id == campaign.id, Enrollment.status == "active"
            )
        ).all()
    verb = "restored" if previous == "archived" and status == "active" else _STATUS_VERBS[status]
    # One INSERT for every contact's timeline row: the circuit breaker pauses a campaign
    # inside a webhook request, whatever its size.
    written = utcnow()
    record_activities(
        session,
        [
            activity_row(
                contact_id,
                f"campaign_{verb}",
                f"{campaign.name} was {verb}",
                actor=actor,
                campaign_id=campaign.id,
                enrollment_id=enrollment_id,
                created_at=written,
            )
            for enrollment_id, contact_id in enrollments
        ],
    )
    summary = f"{campaign.name} {verb}"
    record_audit(session, actor, "campaign.status", "campaign", campaign.id, summary)
    if status != "active":
        return StatusChange(campaign)
    waiting = enroll_waiting(session, campaign, actor=actor, now=now)
    return StatusChange(campaign, waiting.enrolled, len(waiting.refused))


def _record_pause(campaign: Campaign, status: str, *, actor: str, reason: str, now) -> None:
    """Who paused it, when and why (the dashboard and the campaign page say so); back to
    active, the circuit breaker counts only the sends from now on."""
    if status == "paused":
        campaign.paused_reason, campaign.paused_by, campaign.paused_at = reason, actor, now
    elif status == "active":
        if campaign.paused_reason:
            campaign.breaker_counts_from = now
        campaign.paused_reason, campaign.paused_by, campaign.paused_at = "", "", None


# ---------------------------------------------------------------- replies


def set_stop_on_reply(session, campaign: Campaign, enabled: bool, *, actor: str) -> bool:
    """Whether a person's reply ends their enrolment in this campaign (replies.py applies
    it); False when it already was so. `flask seed` never sets it, so this is not an
    edit that keeps the default emails from updating (`customized` stays as it is)."""
    if campaign.stop_on_reply == enabled:
        return False
    campaign.stop_on_reply = enabled
    does = "stops" if enabled else "no longer stops"
    summary = f"{campaign.name}: a contact's reply {does} their emails"
    record_audit(session, actor, "campaign.stop_on_reply", "campaign", campaign.id, summary)
    return True
