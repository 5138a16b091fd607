""" "Why?": for any contact and any email of its campaigns, a plain explanation from
the data of why it was sent, or why not (yet).

The answer is the first of EXPLAINERS that recognises the case, each a small function
of a WhyContext read once (the contact, the email's step and campaign, the contact's
latest enrolment in that campaign, the email's message row if any, the address's
suppression). A new reason is one more function in the list, at its place: a step
condition that does not hold today comes before the dates (a message skipped by a
condition is already told by `_skipped`, from the reason the worker stored).
No HTTP: dates are written by the `fmt` callable the caller gives (the page's one
writes them on the viewer's clock).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from crm_app.drip.audience.eligibility import SUPPRESSION_REASON_LABELS, normalize_email
from crm_app.drip.audience.itinerary import ItineraryItem, contact_itinerary
from crm_app.drip.campaigns.naming import step_name, step_title
from crm_app.drip.campaigns.schedule import add_local_days, clamp_to_send_window
from crm_app.drip.common.labels import actor_label
from crm_app.drip.delivery.frequency_cap import FrequencyCap
from crm_app.drip.experiments.conditions import condition_outlook
from crm_app.models import (
    Campaign,
    CampaignStep,
    Contact,
    Enrollment,
    Message,
    Suppression,
    utcnow,
)

# Who suppressed an address, as "suppressed on ... by <this>".
SUPPRESSED_BY = {
    "bounce": "a bounce",
    "dropped": "SendGrid dropping an email",
    "spamreport": "a spam report",
    "unsubscribe": "an unsubscribe",
    "group_unsubscribe": "a group unsubscribe",
    "manual": "staff",
    "erased": "an erasure (GDPR)",
}


def utc_text(moment: datetime) -> str:
    return f"{moment:%a %d %b %Y %H:%M} UTC"


@dataclass
class WhyContext:
    session: object
    contact: Contact
    step: CampaignStep
    campaign: Campaign
    enrollment: Enrollment | None  # the contact's latest enrolment in the campaign
    message: Message | None  # this email's latest message row for the contact
    suppression: Suppression | None
    now: datetime
    cap: FrequencyCap
    fmt: Callable[[datetime], str] = utc_text

    @property
    def waiting_here(self) -> bool:
        """The enrolment is active and waits for this very email."""
        e = self.enrollment
        return e is not None and e.status == "active" and e.current_step_id == self.step.id


@dataclass
class WhyAnswer:
    status: str  # sent, failed, in_doubt, on_its_way, not_sent, waiting
    summary: str  # one plain sentence
    details: list[str] = field(default_factory=list)


Explainer = Callable[[WhyContext], WhyAnswer | None]


def _sent(ctx: WhyContext) -> WhyAnswer | None:
    m = ctx.message
    if m is None or m.status != "sent":
        return None
    details = []
    if m.delivered_at:
        details.append(f"Delivered {ctx.fmt(m.delivered_at)}.")
    if m.bounced_at:
        details.append(f"Bounced {ctx.fmt(m.bounced_at)}.")
    if m.human_opened_at:
        details.append(f"Opened by the person {ctx.fmt(m.human_opened_at)}.")
    elif m.opened_at:
        details.append("Opened only by a machine (Apple's privacy proxy), not by the person.")
    if m.human_clicked_at:
        details.append(f"A link clicked {ctx.fmt(m.human_clicked_at)}.")
    elif m.clicked_at:
        details.append("Its links were clicked only by a scanner.")
    if m.in_doubt_resolution == "requeued":
        details.append("Sent again after an interrupted send SendGrid had no trace of.")
    return WhyAnswer("sent", f"Sent {ctx.fmt(m.sent_at)}.", details)


def _failed(ctx: WhyContext) -> WhyAnswer | None:
    m = ctx.message
    if m is None or m.status != "failed":
        return None
    said = m.error or "no reason was recorded"
    return WhyAnswer("failed", f"Failed: {said}.", ["An admin can retry it from Admin › Messages."])


def _in_doubt(ctx: WhyContext) -> WhyAnswer | None:
    m = ctx.message
    if m is None or m.status != "in_doubt":
        return None
    since = f" at {ctx.fmt(m.claimed_at)}" if m.claimed_at else ""
    return WhyAnswer(
        "in_doubt",
        f"In doubt: the send started{since} and stopped before SendGrid answered; "
        "it may or may not have gone out.",
        [
            "A SendGrid event settles it as sent; with a healthy webhook and no trace it is "
            "queued again by itself, otherwise an admin decides."
        ],
    )


def _on_its_way(ctx: WhyContext) -> WhyAnswer | None:
    m = ctx.message
    if m is None or m.status not in ("queued", "sending"):
        return None
    if m.status == "sending":
        return WhyAnswer("on_its_way", f"Being sent now (since {ctx.fmt(m.claimed_at)}).")
    if m.next_attempt_at and m.next_attempt_at > ctx.now:
        return WhyAnswer(
            "on_its_way",
            f"Will be tried again {ctx.fmt(m.next_attempt_at)}: {m.error}.",
        )
    return WhyAnswer("on_its_way", "Queued: a worker sends it in a moment.")


def _skipped(ctx: WhyContext) -> WhyAnswer | None:
    """A message set aside for good (a skip that leaves the enrolment at this email is
    only a pause: the explainers after this one say what it waits for)."""
    m = ctx.message
    if m is None or m.status != "skipped" or ctx.waiting_here:
        return None
    return WhyAnswer("not_sent", f"Not sent: skipped, {m.error}.")


def _suppressed(ctx: WhyContext) -> WhyAnswer | None:
    contact = ctx.contact
    if contact.erased_at is not None:
        return WhyAnswer(
            "not_sent",
            f"Not sent: the contact's personal data was erased {ctx.fmt(contact.erased_at)}.",
        )
    s = ctx.suppression
    if s is not None:
        by = SUPPRESSED_BY.get(s.reason, SUPPRESSION_REASON_LABELS.get(s.reason, s.reason))
        details = [f"Source: {s.source}."] if s.source else []
        return WhyAnswer(
            "not_sent",
            f"Not sent: the address is suppressed since {ctx.fmt(s.created_at)} by {by}.",
            details,
        )
    if contact.email_status != "ok":
        return WhyAnswer("not_sent", f"Not sent: the contact is marked {contact.email_status}.")
    return None


def _not_enrolled(ctx: WhyContext) -> WhyAnswer | None:
    if ctx.enrollment is not None:
        return None
    return WhyAnswer(
        "not_sent", f"Not sent: {ctx.contact.full_name} is not enrolled in {ctx.campaign.name}."
    )


def _ended(ctx: WhyContext) -> WhyAnswer | None:
    e = ctx.enrollment
    if e is None or e.status == "active":
        return None
    verb = "completed" if e.status == "completed" else "was stopped"
    when = f" {ctx.fmt(e.ended_at)}" if e.ended_at else ""
    reason = f": {e.end_reason}" if e.end_reason else ""
    return WhyAnswer(
        "not_sent", f"Not sent: the enrolment in {ctx.campaign.name} {verb}{when}{reason}."
    )


def _campaign_stopped(ctx: WhyContext) -> WhyAnswer | None:
    campaign = ctx.campaign
    if campaign.status == "active":
        return None
    if campaign.status == "archived":
        return WhyAnswer("waiting", f"Not sent: {campaign.name} is archived.")
    by = f" by {actor_label(campaign.paused_by)}" if campaign.paused_by else ""
    when = f" {ctx.fmt(campaign.paused_at)}" if campaign.paused_at else ""
    details = [campaign.paused_reason + "."] if campaign.paused_reason else []
    details.append("It goes once an admin resumes the campaign.")
    return WhyAnswer("waiting", f"Not sent yet: {campaign.name} was paused{by}{when}.", details)


def _earlier_step(ctx: WhyContext) -> WhyAnswer | None:
    e = ctx.enrollment
    if ctx.waiting_here or e is None or e.step is None or ctx.message is not None:
        return None
    if ctx.step.position >= e.step.position:
        return None
    return WhyAnswer(
        "not_sent",
        f"Not sent: the contact's enrolment is past it (now at email {e.step.position}); "
        "it started after this email or the emails were reordered.",
    )


def _projected(ctx: WhyContext) -> ItineraryItem | None:
    """This email in the contact's itinerary (the tick's rules projected), if listed."""
    itinerary = contact_itinerary(ctx.session, ctx.contact, cap=ctx.cap, now=ctx.now)
    return next((i for i in itinerary.items if i.step.id == ctx.step.id), None)


def _condition_fails_today(ctx: WhyContext) -> WhyAnswer | None:
    e = ctx.enrollment
    if e is None or e.status != "active" or e.step is None:
        return None
    if ctx.step.position < e.step.position or not (ctx.waiting_here or ctx.message is None):
        return None
    outlook = condition_outlook(ctx.step, ctx.contact)
    if outlook is None or outlook.holds_now is not False:
        return None
    return WhyAnswer(
        "waiting",
        f"Not sent if nothing changes: it goes only if {outlook.label}, which does not hold today.",
        [
            "The condition is checked when the email is due; if it still does not hold, "
            "the email is skipped and the enrolment moves on to the next email."
        ],
    )


def _held_by_cap(ctx: WhyContext) -> WhyAnswer | None:
    e = ctx.enrollment
    if not ctx.waiting_here or e.next_send_at is None:
        return None
    rule = (
        f"At most {ctx.cap.label()} go to one contact across all campaigns; "
        "it goes at the first moment after that inside the send window."
    )
    if e.cap_held_until is not None and e.next_send_at == e.cap_held_until:
        return WhyAnswer(
            "waiting", f"Held by the frequency cap until {ctx.fmt(e.cap_held_until)}.", [rule]
        )
    # Not held yet: the tick holds it when it is due, if the contact's other emails
    # fill the cap by then (what the itinerary on the same page shows).
    projected = _projected(ctx) if ctx.cap.enabled else None
    if projected is None or not projected.held_by_cap or projected.at is None:
        return None
    return WhyAnswer(
        "waiting",
        f"Due {ctx.fmt(e.next_send_at)}, then held by the frequency cap: expected "
        f"{ctx.fmt(projected.at)}.",
        [rule],
    )


def _held_by_window(ctx: WhyContext) -> datetime | None:
    """When the email was due by its delay alone, if the send window is what moved its
    date (None otherwise: a delay edited since, a skipped email, a resume, ...)."""
    e, campaign, tz = ctx.enrollment, ctx.campaign, ctx.contact.timezone
    if e.last_sent_at is None:
        return None
    due = add_local_days(e.last_sent_at, ctx.step.delay_days, tz)
    opening = clamp_to_send_window(
        due, tz, campaign.send_weekdays, campaign.send_start, campaign.send_end
    )
    moved = e.next_send_at - due > timedelta(minutes=1)
    return due if moved and opening == e.next_send_at else None


def _scheduled(ctx: WhyContext) -> WhyAnswer | None:
    e = ctx.enrollment
    if not ctx.waiting_here or e.next_send_at is None:
        return None
    window = f"{ctx.campaign.send_window_label}, the contact's time ({ctx.contact.timezone})"
    due = _held_by_window(ctx)
    if due is not None:
        return WhyAnswer(
            "waiting",
            f"Waiting for the send window: due {ctx.fmt(due)}, it goes when the window "
            f"opens, {ctx.fmt(e.next_send_at)}.",
            [f"Send window: {window}."],
        )
    if e.next_send_at <= ctx.now:
        return WhyAnswer(
            "waiting",
            "Due now: the scheduler queues it at its next run (every minute) when the "
            "send window is open.",
            [f"Send window: {window}."],
        )
    return WhyAnswer(
        "waiting",
        f"Scheduled for {ctx.fmt(e.next_send_at)}.",
        [f"Send window: {window}."],
    )


def _later_step(ctx: WhyContext) -> WhyAnswer | None:
    e = ctx.enrollment
    if e is None or e.status != "active" or e.step is None:
        return None
    if ctx.step.position <= e.step.position:
        return None
    projected = _projected(ctx)
    at = projected.at if projected is not None else None
    expected = f"; expected {ctx.fmt(at)}" if at else ""
    return WhyAnswer(
        "waiting",
        f"Not yet: it comes after email {e.step.position}{expected}.",
    )


def _in_flight_elsewhere(ctx: WhyContext) -> WhyAnswer | None:
    if not ctx.waiting_here:
        return None
    return WhyAnswer("waiting", "Waiting: its email is being prepared.")


EXPLAINERS: list[Explainer] = [
    _sent,
    _failed,
    _in_doubt,
    _on_its_way,
    _skipped,
    _suppressed,
    _not_enrolled,
    _ended,
    _campaign_stopped,
    _earlier_step,
    _condition_fails_today,
    _held_by_cap,
    _scheduled,
    _later_step,
    _in_flight_elsewhere,
]


def why_context(
    session,
    contact: Contact,
    step: CampaignStep,
    *,
    cap: FrequencyCap,
    now: datetime | None = None,
    fmt: Callable[[datetime], str] = utc_text,
) -> WhyContext:
    """Everything the explainers read, in four small queries."""
    campaign = step.campaign
    enrollment = session.scalar(
        sa.select(Enrollment)
        .where(Enrollment.contact_id == contact.id, Enrollment.campaign_id == campaign.id)
        .order_by((Enrollment.status == "active").desc(), Enrollment.id.desc())
        .limit(1)
    )
    message = session.scalar(
        sa.select(Message)
        .where(Message.contact_id == contact.id, Message.step_id == step.id)
        .order_by(Message.id.desc())
        .limit(1)
    )
    suppression = session.scalar(
        sa.select(Suppression).where(Suppression.email == normalize_email(contact.email))
    )
    return WhyContext(
        session, contact, step, campaign, enrollment, message, suppression,
        now or utcnow(), cap, fmt,
    )  # fmt: skip


def explain(ctx: WhyContext) -> WhyAnswer:
    for explainer in EXPLAINERS:
        answer = explainer(ctx)
        if answer is not None:
            break
    else:
        answer = WhyAnswer("waiting", "Nothing stops this email; it has no date yet.")
    if answer.status == "waiting":
        # An email still to go may yet be skipped by its condition: say so beside the date.
        outlook = condition_outlook(ctx.step, ctx.contact)
        if outlook is not None and outlook.holds_now is not False:
            note = outlook.note()
            answer.details.append(f"{note[:1].upper()}{note[1:]}.")
    return answer


def why_email(
    session,
    contact: Contact,
    step: CampaignStep,
    *,
    cap: FrequencyCap,
    now: datetime | None = None,
    fmt: Callable[[datetime], str] = utc_text,
) -> WhyAnswer:
    """Why this email of this contact was, or was not (yet), sent."""
    return explain(why_context(session, contact, step, cap=cap, now=now, fmt=fmt))


@dataclass(frozen=True)
class EmailChoice:
    step_id: int
    label: str


def emails_to_explain(
    session,
    contact: Contact,
    *,
    campaigns: Iterable[Campaign] | None = None,
    subjects: Callable[[CampaignStep], str] = step_title,
) -> list[EmailChoice]:
    """Every email of every campaign the contact was ever enrolled in (the "Why?" list).
    `campaigns`: those campaigns, their steps loaded (the contact page's panel has them).
    `subjects` names each email (the contact page: as this contact would read it)."""
    if campaigns is not None:
        ordered = sorted(set(campaigns), key=lambda c: (c.name, c.id))
        return [
            EmailChoice(step.id, step_name(step, subjects(step)))
            for campaign in ordered
            for step in sorted(campaign.steps, key=lambda s: s.position)
        ]
    campaign_ids = sa.select(Enrollment.campaign_id).where(Enrollment.contact_id == contact.id)
    steps = session.scalars(
        sa.select(CampaignStep)
        .join(Campaign, Campaign.id == CampaignStep.campaign_id)
        .where(CampaignStep.campaign_id.in_(campaign_ids))
        .order_by(Campaign.name, CampaignStep.position)
    )
    return [EmailChoice(step.id, step_name(step, subjects(step))) for step in steps]
