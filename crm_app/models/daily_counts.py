"""The analytics rollups: per campaign, step and UTC day, maintained on every write that
changes a counted column (crm_app/drip/reporting/daily_counts.py keeps them)."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_app.extensions import db
from crm_app.models.types import postgresql_only_table

# step_id 0: a message whose step was removed (messages.step_id NULL).
NO_STEP = 0


class CampaignDailyCounts(db.Model):
    """Messages SENT on `day` (UTC) for a campaign's step, and how many of those were
    delivered, opened, clicked... so far: the analytics cohort, summed over days."""

    __tablename__ = "campaign_daily_counts"

    campaign_id: Mapped[int] = mapped_column(
        sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    # The step's identity, not its position (positions change with live edits); no
    # foreign key: a removed step's history stays.
    step_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    sent: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    delivered: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    opened: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    clicked: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    bounced: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    spam_reports: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    unsubscribed: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    # Opened and clicked by a person (tracking/engagement.py keeps machines apart).
    human_opened: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    human_clicked: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")


class CampaignDailyFirsts(db.Model):
    """First opens and first clicks that happened on `day` (UTC) of a campaign's messages
    sent on `sent_day`: the daily series of a range counts those with both days in it."""

    __tablename__ = "campaign_daily_firsts"

    campaign_id: Mapped[int] = mapped_column(
        sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    sent_day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    opened: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    clicked: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")


class EnrollmentDailyOutcomes(db.Model):
    """Enrolments of a campaign started (and of those, converted) on `day` (UTC), and
    ended (and of those, completed) on `day`: what changed, one row per statement that
    changed it, merged by the tick job (`compact_enrollment_outcomes`); a figure is the
    sum of its rows. PostgreSQL only, appended by statement triggers on `enrollments`
    (migration 0021); SQLite counts from the enrolments."""

    __tablename__ = "enrollment_daily_outcomes"
    __table_args__ = postgresql_only_table(
        sa.Index("ix_enrollment_daily_outcomes_day", "day", "campaign_id")
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.Integer)
    day: Mapped[date] = mapped_column(sa.Date)
    started: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    converted: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    ended: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    completed: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
