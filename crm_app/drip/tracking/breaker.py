"""The circuit breaker: a campaign whose recent sends bounce or draw spam reports
too often pauses itself, before the sending domain's reputation pays for it.

Evaluated where bounces and spam reports arrive (the Event Webhook ingest), only for
the campaigns a batch brought such an event for, with one small query each: the last
`breaker_sends` sent messages of the campaign, read backwards on the index
(campaign_id, sent_at), counting those with `bounced_at` / `spam_reported_at`.

A campaign that has sent fewer than N emails is measured over N all the same (the
missing sends count as clean): a single early bounce does not pause a new campaign,
a burst does. It pauses through the same path an admin's Pause takes
(`manage.set_campaign_status`), with the reason stored; an admin resumes it, and the
breaker then counts only the sends made after the resume.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from crm_app.drip.campaigns.manage import CampaignSettingsError, set_campaign_status
from crm_app.drip.team.audit import record_audit
from crm_app.models import Campaign, Message

BREAKER_ACTOR = "system:circuit-breaker"
# The events that can trip it.
TRIPPING_EVENTS = frozenset({"bounce", "spamreport"})


@dataclass(frozen=True)
class BreakerReading:
    """A campaign's last sends as the breaker sees them."""

    window: int  # N: the sends it measures over
    sends: int  # how many of those exist
    bounces: int
    spam_reports: int

    @property
    def bounce_pct(self) -> float:
        return 100.0 * self.bounces / self.window if self.window else 0.0

    @property
    def spam_pct(self) -> float:
        return 100.0 * self.spam_reports / self.window if self.window else 0.0


def read_breaker(session, campaign: Campaign) -> BreakerReading:
    """Bounces and spam reports among the campaign's last N sends (one query)."""
    window = campaign.breaker_sends
    last = sa.select(Message.bounced_at, Message.spam_reported_at).where(
        Message.campaign_id == campaign.id, Message.sent_at.is_not(None)
    )
    if campaign.breaker_counts_from is not None:
        last = last.where(Message.sent_at >= campaign.breaker_counts_from)
    last = last.order_by(Message.sent_at.desc()).limit(window).subquery()
    sends, bounces, spam = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.count(last.c.bounced_at),
            sa.func.count(last.c.spam_reported_at),
        )
    ).one()
    return BreakerReading(window, int(sends), int(bounces), int(spam))


def trip_reason(campaign: Campaign, reading: BreakerReading) -> str | None:
    """Why the breaker trips for this reading, or None (at the threshold: not yet)."""
    if reading.window <= 0:
        return None
    over = f"over its last {reading.window} sends"
    if reading.sends < reading.window:
        over = f"over {reading.window} sends ({reading.sends} so far)"
    if reading.bounce_pct > campaign.breaker_bounce_pct:
        return (
            f"Paused by the circuit breaker: {reading.bounces} bounces {over} "
            f"({reading.bounce_pct:.1f} %, above {campaign.breaker_bounce_pct:g} %)"
        )
    if reading.spam_pct > campaign.breaker_spam_pct:
        return (
            f"Paused by the circuit breaker: {reading.spam_reports} spam reports {over} "
            f"({reading.spam_pct:.2f} %, above {campaign.breaker_spam_pct:g} %)"
        )
    return None


def check_campaigns(session, campaign_ids: Iterable[int], *, now: datetime) -> list[Campaign]:
    """Pause each of these campaigns whose last sends cross a threshold; returns the
    ones paused now. The caller commits (with the events that tripped it)."""
    tripped = []
    for campaign_id in sorted(set(campaign_ids)):
        # Read without a lock first: most batches cross nothing, and a lock held to the
        # commit would queue every concurrent webhook request behind this one.
        if _crossing(session, session.get(Campaign, campaign_id)) is None:
            continue
        # Crossing: locked (PostgreSQL) and decided again, so two requests do not both
        # pause it; SQLite's single writer does the same. NO KEY UPDATE: the batch's
        # timeline rows hold KEY SHARE locks on the campaign (their foreign key), as
        # another request's may.
        campaign = session.scalar(
            sa.select(Campaign)
            .where(Campaign.id == campaign_id)
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        )
        reason = _crossing(session, campaign)
        if reason is None:
            continue
        set_campaign_status(
            session, campaign, "paused", actor=BREAKER_ACTOR, now=now, reason=reason
        )
        tripped.append(campaign)
    return tripped


def _crossing(session, campaign: Campaign | None) -> str | None:
    """Why this campaign should pause now, or None (not active, no breaker, clean)."""
    if campaign is None or campaign.status != "active" or campaign.breaker_sends <= 0:
        return None
    return trip_reason(campaign, read_breaker(session, campaign))


def tripping_campaigns(events: Iterable) -> set[int]:
    """The campaigns a webhook batch brought a bounce or spam report for."""
    return {
        e.campaign_id for e in events if e.event in TRIPPING_EVENTS and e.campaign_id is not None
    }


def paused_by_breaker() -> sa.ColumnElement[bool]:
    """A campaign the breaker paused and nobody resumed yet (the dashboard lists them)."""
    return sa.and_(Campaign.status == "paused", Campaign.paused_by == BREAKER_ACTOR)


# -- the campaign page's breaker settings (admins) ----------------------------------

BREAKER_MAX_SENDS = 100_000


def breaker_form(campaign: Campaign, submitted: dict | None = None) -> dict[str, str]:
    """What the breaker form shows: the saved settings, or what was just submitted."""
    if submitted is not None:
        return {name: str(submitted.get(name, "")) for name in BREAKER_FIELDS}
    return {
        "breaker_sends": str(campaign.breaker_sends),
        "breaker_bounce_pct": f"{campaign.breaker_bounce_pct:g}",
        "breaker_spam_pct": f"{campaign.breaker_spam_pct:g}",
    }


BREAKER_FIELDS = ("breaker_sends", "breaker_bounce_pct", "breaker_spam_pct")


def _percent(text: str) -> float:
    value = float(text.strip().rstrip("%").strip())
    if not 0 < value <= 100:
        raise ValueError
    return value


def update_breaker(session, campaign: Campaign, form: dict, *, actor: str) -> str:
    """Save the breaker's window and thresholds; a notice, or CampaignSettingsError with
    a message per field (nothing saved)."""
    errors: dict[str, str] = {}
    try:
        sends = int(str(form.get("breaker_sends", "")).strip())
        if not 0 <= sends <= BREAKER_MAX_SENDS:
            raise ValueError
    except ValueError:
        errors["breaker_sends"] = f"A whole number from 0 (off) to {BREAKER_MAX_SENDS:,}."
    values = {}
    for name in ("breaker_bounce_pct", "breaker_spam_pct"):
        try:
            values[name] = _percent(str(form.get(name, "")))
        except ValueError:
            errors[name] = "A percentage above 0 and at most 100, such as 5 or 0.3."
    if errors:
        raise CampaignSettingsError(errors)
    campaign.breaker_sends = sends
    campaign.breaker_bounce_pct = values["breaker_bounce_pct"]
    campaign.breaker_spam_pct = values["breaker_spam_pct"]
    summary = (
        f"{campaign.name}: circuit breaker off"
        if sends == 0
        else f"{campaign.name}: circuit breaker over {sends} sends, bounces above "
        f"{campaign.breaker_bounce_pct:g} %, spam reports above {campaign.breaker_spam_pct:g} %"
    )
    record_audit(session, actor, "campaign.breaker", "campaign", campaign.id, summary)
    return summary.split(": ", 1)[1].capitalize() + "."
