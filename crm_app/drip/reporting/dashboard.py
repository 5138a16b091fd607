"""The home page's figures: what went out, what is coming, what needs a look.

Five small aggregate queries, each served by an index (sent_at, the due index
on enrolments, messages' status index, webhook_batches.received_at).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

import sqlalchemy as sa

from crm_app.drip.common.timezones import zone_or_utc
from crm_app.models import Campaign, Enrollment, Message, utcnow
from crm_app.models.tracking import WebhookBatch

# A webhook silent for this long while mail goes out probably means it is broken.
WEBHOOK_SILENCE_WARNING = timedelta(hours=24)


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

    @property
    def active_total(self) -> int:
        return sum(count for _, _, count in self.active_by_campaign)


def _local_midnights(now: datetime, tz_name: str) -> tuple[datetime, datetime]:
    """Start of today and of this week (Monday) in the viewer's zone, as aware datetimes."""
    zone = zone_or_utc(tz_name)  # an unknown zone name must not break the home page
    local = now.astimezone(zone)
    today = datetime.combine(local.date(), time(0), tzinfo=zone)
    week = datetime.combine(local.date() - timedelta(days=local.weekday()), time(0), tzinfo=zone)
    return today, week


def _sent_counts(session, now: datetime, since: tuple[datetime, datetime]) -> tuple[int, int]:
    """Emails sent since each of two moments (today's and this week's local midnight)."""

    def sent_since(moment: datetime):
        return sa.func.coalesce(sa.func.sum(sa.case((Message.sent_at >= moment, 1), else_=0)), 0)

    first, second = since
    counts = session.execute(
        sa.select(sent_since(first), sent_since(second)).where(
            Message.sent_at >= min(first, second), Message.sent_at <= now
        )
    ).one()
    return int(counts[0] or 0), int(counts[1] or 0)


def _active_by_campaign(session) -> list[tuple[int, str, int]]:
    return [
        (campaign_id, name, int(count))
        for campaign_id, name, count in session.execute(
            sa.select(Campaign.id, Campaign.name, sa.func.count(Enrollment.id))
            .join(Enrollment, Enrollment.campaign_id == Campaign.id)
            .where(Enrollment.status == "active")
            .group_by(Campaign.id, Campaign.name)
            .order_by(Campaign.name)
        )
    ]


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
    sent_today, sent_week = _sent_counts(session, now, _local_midnights(now, tz_name))
    # Overdue ones count too: the next tick sends them.
    scheduled = session.scalar(
        sa.select(sa.func.count(Enrollment.id)).where(
            Enrollment.status == "active",
            Enrollment.next_send_at.is_not(None),
            Enrollment.next_send_at < now + timedelta(hours=24),
        )
    )
    by_status = dict(
        session.execute(
            sa.select(Message.status, sa.func.count(Message.id))
            .where(Message.status.in_(("failed", "in_doubt")))
            .group_by(Message.status)
        ).all()
    )
    last_webhook = session.scalar(
        sa.select(WebhookBatch).order_by(WebhookBatch.received_at.desc()).limit(1)
    )
    warning = _webhook_warning(last_webhook, now, sent_today, sent_week) if expects_webhook else ""
    return Dashboard(
        now=now,
        sent_today=sent_today,
        sent_this_week=sent_week,
        scheduled_next_24h=int(scheduled or 0),
        active_by_campaign=_active_by_campaign(session),
        failed=int(by_status.get("failed", 0)),
        in_doubt=int(by_status.get("in_doubt", 0)),
        last_webhook=last_webhook,
        webhook_warning=warning,
    )
