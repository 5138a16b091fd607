"""The home page's figures: what went out, what is coming, what needs a look.

Three queries whatever the volume (four once a webhook called): one row of counts, one
row per campaign (its active enrolments, whether the breaker paused it), and SendGrid's
refusal of the API key, by its primary key (provider_health, as health reads it). Each
count is served by an index (sent_at, the due index on enrolments, messages' status
index, the in-doubt resolutions' partial index, the active-enrolments-by-campaign
index) and capped at DASHBOARD_COUNT_CAP: "1,000+" reads a thousand index entries,
an exact figure at a million contacts would read them all on every visit. Analytics
has the exact numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from functools import cache

import sqlalchemy as sa

from crm_app.drip.common.paging import count_up_to
from crm_app.drip.common.timezones import zone_or_utc
from crm_app.drip.delivery.in_doubt import RESOLUTIONS, resolution_counts
from crm_app.drip.delivery.provider_health import AuthFailure, current_auth_failure
from crm_app.drip.tracking.breaker import paused_by_breaker
from crm_app.models import Campaign, Enrollment, Message, utcnow
from crm_app.models.tracking import WebhookBatch

# A webhook silent for this long while mail goes out probably means it is broken.
WEBHOOK_SILENCE_WARNING = timedelta(hours=24)
# Counts stop here and read "1,000+".
DASHBOARD_COUNT_CAP = 1000


@dataclass(frozen=True)
class PausedCampaign:
    """A campaign the circuit breaker paused: what the dashboard says of it."""

    id: int
    name: str
    paused_at: datetime | None
    paused_reason: str


@dataclass
class Dashboard:
    now: datetime
    sent_today: int
    sent_this_week: int
    scheduled_next_24h: int
    active_by_campaign: list[tuple[int, str, int]]  # (campaign id, name, active enrolments)
    failed: int
    in_doubt: int
    last_webhook: WebhookBatch | None
    webhook_warning: str = ""
    # Campaigns the circuit breaker paused, with the reason (tracking/breaker.py).
    paused_by_breaker: list[PausedCampaign] = field(default_factory=list)
    # In-doubt emails settled each way (delivery/in_doubt.py RESOLUTIONS), all time.
    in_doubt_resolved: dict[str, int] = field(default_factory=dict)
    # SendGrid refused the API key (401/403): nothing is sent until it works again.
    auth_failure: AuthFailure | None = None

    @property
    def active_total(self) -> int:
        return sum(count for _, _, count in self.active_by_campaign)

    @staticmethod
    def label(count: int) -> str:
        """A count as the page shows it: exact up to the cap, then "1,000+"."""
        return f"{DASHBOARD_COUNT_CAP:,}+" if count > DASHBOARD_COUNT_CAP else f"{count:,}"

    @property
    def active_total_label(self) -> str:
        capped = any(count > DASHBOARD_COUNT_CAP for _, _, count in self.active_by_campaign)
        total = sum(min(count, DASHBOARD_COUNT_CAP) for _, _, count in self.active_by_campaign)
        return f"{total:,}+" if capped else f"{total:,}"


def _local_midnights(now: datetime, tz_name: str) -> tuple[datetime, datetime]:
    """Start of today and of this week (Monday) in the viewer's zone, as aware datetimes."""
    zone = zone_or_utc(tz_name)  # an unknown zone name must not break the home page
    local = now.astimezone(zone)
    today = datetime.combine(local.date(), time(0), tzinfo=zone)
    week = datetime.combine(local.date() - timedelta(days=local.weekday()), time(0), tzinfo=zone)
    return today, week


def _capped(cap: int, row_id, *conditions) -> sa.ScalarSelect:
    """How many rows match, counted up to `cap` + 1."""
    return count_up_to(sa.select(row_id).where(*conditions), cap + 1)


# The two statements are built once per cap, their moments bound by name on each visit:
# building them cost about as much CPU as the database spends answering them.


@cache
def _figures_statement(cap: int) -> sa.Select:
    moment = Message.sent_at.type
    now, today, week, due_by = (
        sa.bindparam(name, type_=moment) for name in ("now", "today", "week", "due_by")
    )
    active_campaigns = sa.select(Campaign.id).where(Campaign.status == "active")
    scheduled = (
        Enrollment.status == "active",
        Enrollment.next_send_at.is_not(None),
        Enrollment.next_send_at < due_by,
        # A paused or archived campaign sends nothing until it is resumed.
        Enrollment.campaign_id.in_(active_campaigns.scalar_subquery()),
    )  # overdue ones count too: the next tick sends them
    return sa.select(
        _capped(cap, Message.id, Message.sent_at >= today, Message.sent_at <= now),
        _capped(cap, Message.id, Message.sent_at >= week, Message.sent_at <= now),
        _capped(cap, Enrollment.id, *scheduled),
        _capped(cap, Message.id, Message.status == "failed"),
        _capped(cap, Message.id, Message.status == "in_doubt"),
        sa.select(WebhookBatch.id)
        .order_by(WebhookBatch.received_at.desc())
        .limit(1)
        .scalar_subquery(),
        *resolution_counts().values(),
    )


def _figures(session, now: datetime, today: datetime, week: datetime):
    """One row: sent today, sent this week, due in 24 h, failed, in doubt, last webhook,
    then the in-doubt emails settled each way (RESOLUTIONS' order)."""
    moments = {"now": now, "today": today, "week": week, "due_by": now + timedelta(hours=24)}
    return session.execute(_figures_statement(DASHBOARD_COUNT_CAP), moments).one()


@cache
def _campaigns_statement(cap: int) -> sa.Select:
    active = (
        sa.select(Enrollment.id)
        .where(Enrollment.campaign_id == Campaign.id, Enrollment.status == "active")
        .correlate(Campaign)
    )
    counted = count_up_to(active, cap + 1)
    return sa.select(
        Campaign.id, Campaign.name, counted,
        paused_by_breaker(), Campaign.paused_at, Campaign.paused_reason,
    ).order_by(Campaign.name)  # fmt: skip


def _campaigns(session) -> tuple[list[tuple[int, str, int]], list[PausedCampaign]]:
    """(campaign id, name, active enrolments capped) for campaigns with any; the
    campaigns the breaker paused, the latest first."""
    active, paused = [], []
    rows = session.execute(_campaigns_statement(DASHBOARD_COUNT_CAP))
    for campaign_id, name, count, breaker, paused_at, reason in rows:
        if count:
            active.append((campaign_id, name, int(count)))
        if breaker:
            paused.append(PausedCampaign(campaign_id, name, paused_at, reason))
    paused.sort(key=lambda campaign: campaign.paused_at or datetime.min, reverse=True)
    return active, paused


def _webhook_warning(
    last_webhook: WebhookBatch | None, now: datetime, sent_today: int, sent_week: int
) -> str:
    if last_webhook is None:
        if sent_week:
            return "Mail went out this week but SendGrid has never called the webhook."
    elif now - last_webhook.received_at > WEBHOOK_SILENCE_WARNING and sent_today:
        return "No webhook call for over 24 hours although mail went out today."
    return ""


def home_dashboard(
    session,
    *,
    tz_name: str = "UTC",
    now: datetime | None = None,
    expects_webhook: bool = True,
) -> Dashboard:
    """`expects_webhook`: mail goes through SendGrid (with the Outbox no webhook ever calls)."""
    now = now or utcnow()
    today, week = _local_midnights(now, tz_name)
    figures = _figures(session, now, today, week)
    sent_today, sent_week, scheduled, failed, in_doubt, webhook_id = figures[:6]
    active_by_campaign, paused_by_breaker = _campaigns(session)
    last_webhook = session.get(WebhookBatch, webhook_id) if webhook_id else None
    warning = _webhook_warning(last_webhook, now, sent_today, sent_week) if expects_webhook else ""
    return Dashboard(
        now=now,
        sent_today=sent_today,
        sent_this_week=sent_week,
        scheduled_next_24h=scheduled,
        active_by_campaign=active_by_campaign,
        failed=failed,
        in_doubt=in_doubt,
        last_webhook=last_webhook,
        webhook_warning=warning,
        paused_by_breaker=paused_by_breaker,
        in_doubt_resolved=dict(zip(RESOLUTIONS, map(int, figures[6:]), strict=True)),
        auth_failure=current_auth_failure(session),
    )
