"""A contact's itinerary: the emails it will get next across all its campaigns, with
their dates, as delivery will actually send them.

The projection follows the same rules as the tick and the worker, in the same order:
each active enrolment's next email at its `next_send_at` (an overdue one at the next
moment its send window is open), each later email `delay_days` after the one before
on the contact's wall clock (so DST never shifts 10:00) and inside the campaign's send
window (`schedule.send_time_for_step`, what `advance` uses); a paused or archived
campaign has no date; and the frequency cap (`frequency_cap.held_until`, the tick's
own rule) over the contact's recent sends and the projected ones, in time order across
campaigns. An email whose condition on the contact's fields does not hold today is
listed as skipped, takes no slot of the cap, and its campaign's next email follows
from its date, as the worker's skip would do. Dates are UTC here; the page shows them
on the contact's and the viewer's clocks. No HTTP, no writes.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from crm_app.drip.audience.eligibility import mailing_block_reason
from crm_app.drip.audience.panel import CampaignPanel, in_flight_emails
from crm_app.drip.campaigns.naming import step_title
from crm_app.drip.campaigns.schedule import clamp_to_send_window, send_time_for_step
from crm_app.drip.delivery.frequency_cap import FrequencyCap, held_until, recent_sends
from crm_app.drip.experiments.conditions import condition_outlook
from crm_app.models import Campaign, CampaignStep, Contact, Enrollment, utcnow

# How far ahead, and how many emails, the page lists.
HORIZON = timedelta(days=366)
MAX_ITEMS = 12


@dataclass
class ItineraryItem:
    campaign: Campaign
    step: CampaignStep
    at: datetime | None  # UTC; None: no date (campaign stopped, or waiting for an admin)
    # Why the date is what it is, beyond the step's delay: "held by the frequency cap
    # (due ...)", "in the send window's next opening", "on its way now".
    notes: list[str] = field(default_factory=list)
    title: str = ""  # the subject as this contact would read it (`contact_itinerary`)
    held_by_cap: bool = False  # the frequency cap moves it past its due time


@dataclass
class Itinerary:
    items: list[ItineraryItem]
    # Why nothing will be sent at all (suppressed, erased), or None.
    blocked: str | None = None
    cap: FrequencyCap | None = None

    def next_email_at(self, enrollment: Enrollment) -> datetime | None:
        """When the enrolment's current email goes, as listed here (after the window and
        the cap: what the campaign panel shows); its due date when it is not listed."""
        return next(
            (i.at for i in self.items if i.step.id == enrollment.current_step_id and i.at),
            enrollment.next_send_at,
        )


@dataclass(order=True)
class _Next:
    at: datetime
    # 1: due the moment the email before it goes (no delay). The tick sees it only once
    # that one went out, so every other email due at that moment comes first.
    after_previous: int
    order: int
    enrollment: Enrollment = field(compare=False)
    step: CampaignStep = field(compare=False)
    due: datetime = field(compare=False)  # when it was due before the cap moved it
    notes: list[str] = field(compare=False, default_factory=list)


def _steps_after(enrollment: Enrollment, step: CampaignStep) -> CampaignStep | None:
    steps = sorted(enrollment.campaign.steps, key=lambda s: s.position)
    ids = [s.id for s in steps]
    index = ids.index(step.id) if step.id in ids else None
    return steps[index + 1] if index is not None and index + 1 < len(steps) else None


def contact_itinerary(
    session,
    contact: Contact,
    *,
    cap: FrequencyCap,
    now: datetime | None = None,
    limit: int = MAX_ITEMS,
    panel: CampaignPanel | None = None,
    subjects: Callable[[CampaignStep], str] = step_title,
) -> Itinerary:
    """The contact's next emails across its campaigns, soonest first. `panel`: the
    contact page's campaign panel, whose active enrolments (campaigns and steps loaded),
    in-flight emails and block reason are reused; then one query (recent sends).
    `subjects` names each email (the contact page: as this contact would read it)."""
    now = now or utcnow()
    if panel is None:
        blocked = mailing_block_reason(session, contact)
        enrollments = [] if blocked else _active_enrollments(session, contact)
        in_flight = in_flight_emails(session, enrollments)
    else:
        blocked, enrollments, in_flight = panel.block_reason, panel.active, panel.in_flight
    if blocked:
        return Itinerary([], blocked, cap)
    sends = (
        recent_sends(session, [contact.id], now - cap.window, now=now, include_queued=True).get(
            contact.id, []
        )
        if cap.enabled
        else []
    )
    projection = _Projection(contact, cap, now, sends)
    for order, enrollment in enumerate(sorted(enrollments, key=lambda e: e.id)):
        projection.start(order, enrollment, in_flight)
    projection.run(limit)
    items = projection.items
    items.sort(key=lambda item: (item.at is None, item.at or now))
    for item in items:
        item.title = subjects(item.step)
    return Itinerary(items, None, cap)


def _active_enrollments(session, contact: Contact) -> list[Enrollment]:
    return list(
        session.scalars(
            sa.select(Enrollment)
            .where(Enrollment.contact_id == contact.id, Enrollment.status == "active")
            .options(selectinload(Enrollment.campaign).selectinload(Campaign.steps))
        )
    )


class _Projection:
    """The emails listed so far, and the ones still to place in time order (a heap)."""

    def __init__(self, contact: Contact, cap: FrequencyCap, now: datetime, sends: list):
        self.contact, self.cap, self.now, self.sends = contact, cap, now, sends
        self.items: list[ItineraryItem] = []
        self.queue: list[_Next] = []
        self.cap_note = f"held by the frequency cap ({cap.label()})"

    def start(self, order: int, enrollment: Enrollment, in_flight: dict[int, str]) -> None:
        """An enrolment's current email: listed now when it has no date of its own,
        else queued at its due time inside the send window."""
        step, campaign, now = enrollment.step, enrollment.campaign, self.now
        if step is None:
            return
        if campaign.status != "active":
            self.items.append(
                ItineraryItem(campaign, step, None, [f"{campaign.name} is {campaign.status}"])
            )
            return
        if enrollment.next_send_at is None:
            state = in_flight.get(enrollment.id)
            if state in ("queued", "sending"):
                # On its way now; already among the recent sends the cap counts.
                self.items.append(ItineraryItem(campaign, step, now, ["on its way now"]))
                self._queue_following(order, enrollment, step, now)
            else:
                note = f"waiting for an admin (the email is {state})" if state else "no date"
                self.items.append(ItineraryItem(campaign, step, None, [note]))
            return
        due = enrollment.next_send_at
        notes = []
        at = clamp_to_send_window(
            max(due, now), self.contact.timezone, campaign.send_weekdays, campaign.send_start,
            campaign.send_end,
        )  # fmt: skip
        if enrollment.cap_held_until is not None and enrollment.cap_held_until == due:
            notes.append(self.cap_note)
        elif at > max(due, now):
            notes.append("at the send window's next opening")
        heapq.heappush(self.queue, _Next(at, 0, order, enrollment, step, due, notes))

    def run(self, limit: int) -> None:
        """Place the queued emails soonest first, each held by the cap as the tick would,
        each followed by its campaign's next email."""
        while self.queue and len(self.items) < limit:
            nxt = heapq.heappop(self.queue)
            if nxt.at > self.now + HORIZON:
                break
            campaign = nxt.enrollment.campaign
            if self.cap.enabled:
                until = held_until(self.cap, self.sends, nxt.at, campaign, self.contact.timezone)
                if until is not None:
                    notes = nxt.notes if self.cap_note in nxt.notes else [*nxt.notes, self.cap_note]
                    heapq.heappush(
                        self.queue,
                        _Next(until, 0, nxt.order, nxt.enrollment, nxt.step, nxt.due, notes),
                    )
                    continue
            outlook = condition_outlook(nxt.step, self.contact)
            notes = nxt.notes if outlook is None else [*nxt.notes, outlook.note()]
            if self.cap.enabled and (outlook is None or outlook.holds_now is not False):
                self.sends.append(nxt.at)  # a skipped email takes no slot (skip_rules)
            held = self.cap_note in notes
            self.items.append(ItineraryItem(campaign, nxt.step, nxt.at, notes, held_by_cap=held))
            self._queue_following(nxt.order, nxt.enrollment, nxt.step, nxt.at)

    def _queue_following(
        self, order: int, enrollment: Enrollment, step: CampaignStep, after: datetime
    ) -> None:
        following = _steps_after(enrollment, step)
        if following is not None:
            campaign = enrollment.campaign
            at = send_time_for_step(campaign, self.contact, following.delay_days, after)
            then = int(at == after)
            heapq.heappush(self.queue, _Next(at, then, order, enrollment, following, at))
