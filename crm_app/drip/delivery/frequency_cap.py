"""The frequency cap: at most N emails to one contact per rolling window, across all
campaigns (FREQUENCY_CAP_COUNT, FREQUENCY_CAP_WINDOW_HOURS; 0 = off).

Enforced where a send is decided, by the same rule:
- the tick, before it creates a message row: a due step whose contact already had N
  emails in the window (sent, in flight, or queued to go) is held: its enrolment's
  `next_send_at` moves to the next allowed moment inside the step's send window, and
  `cap_held_until` plus a timeline row say so. Nothing is created, so nothing can go
  twice; the step stays due, so nothing is lost.
- the worker, just before the claim (retries, an admin's resend, rows created before
  the cap was lowered): the queued row is set aside (`skipped`, "held by the cap
  until ...") and its enrolment is due again then; the tick then queues that same row
  again (the existing skipped -> queued path), never a second one.

`next_allowed` is the pure rule, which the itinerary and "why?" use as well.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import sqlalchemy as sa

from crm_app.config import Settings
from crm_app.drip.campaigns.schedule import clamp_to_send_window
from crm_app.drip.common.activity import activity_row, record_activities
from crm_app.drip.common.sql import (
    checked_on_found_rows,
    for_each_named_value,
    in_values,
    is_postgres,
    update_rows,
)
from crm_app.drip.delivery.compose import email_label
from crm_app.drip.delivery.transitions import MESSAGES, record_message_activity, update_if
from crm_app.models import REACHED_STATUSES, Campaign, Enrollment, Message

ENROLLMENTS = Enrollment.__table__


@dataclass(frozen=True)
class FrequencyCap:
    count: int
    window: timedelta

    @property
    def enabled(self) -> bool:
        return self.count > 0 and self.window > timedelta(0)

    @classmethod
    def from_settings(cls, settings: Settings) -> FrequencyCap:
        return cls(
            settings.frequency_cap_count,
            timedelta(hours=settings.frequency_cap_window_hours),
        )

    def label(self) -> str:
        hours = self.window.total_seconds() / 3600
        span = "day" if hours == 24 else f"{hours:g} hours"
        return f"{self.count} email{'' if self.count == 1 else 's'} per {span}"


def next_allowed(cap: FrequencyCap, sends: Iterable[datetime], at: datetime) -> datetime:
    """The first moment at or after `at` when one more email keeps the contact within
    the cap, given its sends (the window is open at its start: a send exactly one
    window ago no longer counts)."""
    recent = sorted(s for s in sends if s > at - cap.window)
    if len(recent) < cap.count:
        return at
    return recent[-cap.count] + cap.window


def held_until(
    cap: FrequencyCap, sends: Iterable[datetime], at: datetime, campaign: Campaign, tz_name: str
) -> datetime | None:
    """When a step due at `at` may go under the cap, inside its campaign's send window
    (None: it is not held)."""
    allowed = next_allowed(cap, sends, at)
    if allowed <= at:
        return None
    return clamp_to_send_window(
        allowed, tz_name, campaign.send_weekdays, campaign.send_start, campaign.send_end
    )


def recent_sends(
    session,
    contact_ids: Iterable[int],
    since: datetime,
    *,
    now: datetime,
    include_queued: bool,
    exclude: Iterable[int] = (),
) -> dict[int, list[datetime]]:
    """Contact id -> the times of its emails that count against the cap after `since`
    (sent: sent_at; in flight: claimed_at; queued, when asked: `now`, it goes soon).
    One query on the contact index."""
    contact_ids = set(contact_ids)
    if not contact_ids:
        return {}
    rows = session.execute(
        _recent_sends_statement(is_postgres(session), include_queued),
        {"contact_ids": list(contact_ids), "since": since},
    )
    excluded = set(exclude)
    sends: dict[int, list[datetime]] = defaultdict(list)
    for message_id, contact_id, status, sent_at, claimed_at in rows:
        if message_id in excluded:
            continue
        sends[contact_id].append(now if status == "queued" else (sent_at or claimed_at))
    return sends


@cache
def _recent_sends_statement(postgres: bool, include_queued: bool) -> sa.Select:
    """Built once (every delivery chunk and contact page runs it), its values bound by name:
    each contact's emails read by contact, the rest checked on those."""
    statuses = REACHED_STATUSES + (("queued",) if include_queued else ())
    since = sa.bindparam("since", type_=Message.sent_at.type)
    sends = sa.select(
        Message.id, Message.contact_id, Message.status, Message.sent_at, Message.claimed_at
    ).where(
        checked_on_found_rows(
            Message.status.in_(statuses),
            sa.or_(
                Message.status == "queued",
                Message.sent_at > since,
                sa.and_(Message.sent_at.is_(None), Message.claimed_at > since),
            ),
        )
    )
    return for_each_named_value(postgres, sends, Message.contact_id, "contact_ids")


def hold_text(until: datetime) -> str:
    return f"held by the frequency cap until {until:%Y-%m-%d %H:%M} UTC"


# -- the tick ---------------------------------------------------------------------------


@dataclass
class CapHold:
    enrollment_id: int
    contact_id: int
    campaign_id: int
    seen_step_id: int
    seen_next_send_at: datetime
    until: datetime


def apply_cap_in_tick(
    session, cap: FrequencyCap, candidates: list[dict], rows, campaigns, now: datetime
) -> tuple[list[dict], list[CapHold]]:
    """Split the tick's due steps (`candidates`: message rows to create, in due order)
    into those the cap allows and those it holds."""
    if not cap.enabled or not candidates:
        return candidates, []
    seen = {r.id: r for r in rows}
    sends = recent_sends(
        session,
        {c["contact_id"] for c in candidates},
        now - cap.window,
        now=now,
        include_queued=True,
    )
    allowed, holds = [], []
    for candidate in candidates:
        row = seen[candidate["enrollment_id"]]
        contact_sends = sends[candidate["contact_id"]]
        until = held_until(cap, contact_sends, now, campaigns[row.campaign_id], row.timezone)
        if until is None:
            allowed.append(candidate)
            contact_sends.append(now)  # a second due step of this contact sees this one
        else:
            holds.append(
                CapHold(
                    row.id,
                    row.contact_id,
                    row.campaign_id,
                    row.current_step_id,
                    row.next_send_at,
                    until,
                )  # fmt: skip
            )
    return allowed, holds


def record_holds(session, holds: list[CapHold], now: datetime) -> int:
    """Move each held enrolment to its allowed moment, only if nobody moved it since;
    a timeline row for each one moved. Returns how many."""
    if not holds:
        return 0
    moved = update_rows(
        session,
        ENROLLMENTS,
        [
            {
                "id": h.enrollment_id,
                "seen_step_id": h.seen_step_id,
                "seen_next_send_at": h.seen_next_send_at,
                "until": h.until,
            }
            for h in holds
        ],
        types={
            "seen_step_id": ENROLLMENTS.c.current_step_id.type,
            "seen_next_send_at": ENROLLMENTS.c.next_send_at.type,
            "until": ENROLLMENTS.c.next_send_at.type,
        },
        where=lambda r: [
            ENROLLMENTS.c.status == "active",
            ENROLLMENTS.c.current_step_id == r.seen_step_id,
            ENROLLMENTS.c.next_send_at == r.seen_next_send_at,
        ],
        values=lambda r: {"next_send_at": r.until, "cap_held_until": r.until},
    )
    moved_ids = set(moved)
    record_activities(
        session,
        [
            activity_row(
                h.contact_id,
                "email_held",
                f"Next email {hold_text(h.until)}",
                actor="system:tick",
                campaign_id=h.campaign_id,
                enrollment_id=h.enrollment_id,
                created_at=now,
            )
            for h in holds
            if h.enrollment_id in moved_ids
        ],
    )
    return len(moved_ids)


# -- the worker -------------------------------------------------------------------------


class WorkerCap:
    """The cap as a chunk's worker applies it: the contacts' recent sends read once (one
    query), then asked email by email, in order, only for the emails that would go (a
    skipped one takes no slot). Two of one contact in the chunk: the first goes."""

    def __init__(self, session, cap: FrequencyCap, messages: list[Message], now: datetime):
        self.cap, self.now = cap, now
        contacts = {m.contact_id for m in messages} if cap.enabled else set()
        self.sends = recent_sends(
            session, contacts, now - cap.window, now=now, include_queued=False
        )

    def held_until(self, message: Message) -> datetime | None:
        """Until when the cap holds this email, or None: it goes (and takes its slot)."""
        if not self.cap.enabled:
            return None
        contact_sends = self.sends.setdefault(message.contact_id, [])
        until = held_until(
            self.cap, contact_sends, self.now, message.campaign, message.contact.timezone
        )
        if until is None:
            contact_sends.append(self.now)
        return until


def hold_message(session, message: Message, until: datetime, actor: str) -> bool:
    """The cap's hold (`hold_until`), which the itinerary and "Why?" then name."""
    held = hold_until(session, message, until, hold_text(until), actor)
    enrollment = message.enrollment
    if held and enrollment.status == "active" and enrollment.current_step_id == message.step_id:
        enrollment.cap_held_until = until
    return held


def hold_until(session, message: Message, until: datetime, reason: str, actor: str) -> bool:
    """queued -> skipped (`reason`: the cap's or the send window's hold), its enrolment
    due again then: the tick queues this same row again at that moment. False if it
    changed meanwhile."""
    if not update_if(session, message.id, MESSAGES.c.status == "queued", status="skipped",
                     error=reason):  # fmt: skip
        return False
    enrollment = message.enrollment
    if enrollment.status == "active" and enrollment.current_step_id == message.step_id:
        enrollment.next_send_at = until
    detail = f"{email_label(message)} {reason}"
    record_message_activity(session, message, "email_held", detail, actor)
    return True


def clear_holds(session, enrollment_ids: list[int]) -> None:
    """The held step's email is on its way: the hold is over."""
    if enrollment_ids:
        session.execute(
            sa.update(ENROLLMENTS)
            .where(
                in_values(session, ENROLLMENTS.c.id, enrollment_ids),
                ENROLLMENTS.c.cap_held_until.is_not(None),
            )
            .values(cap_held_until=None)
        )
