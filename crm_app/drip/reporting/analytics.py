"""Campaign results over a date range: aggregate queries only, never one per row.

Every figure is a cohort of messages *sent* in [start, end): opens, clicks,
bounces ... are the first-event columns on those same messages (set by the
webhook), so "unique opens" is a count of messages with `opened_at`. They are read
from the daily rollups (campaign_daily_counts, campaign_daily_firsts), which every
write keeps equal to those counts (crm_app/drip/reporting/daily_counts.py). Enrolment
figures use the enrolments table: completion over enrolments that *ended* in the
range, conversion over enrolments that *started* in it.

Indexes used: the rollups' primary keys (campaign, then day), enrollments(enrolled_at)
and enrollments(ended_at) for the outcomes (bench/analytics_bench.py measures).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa

from crm_app.drip.campaigns.naming import subject_title
from crm_app.drip.common.sql import count_where, is_postgres
from crm_app.drip.reporting.date_range import DateRange
from crm_app.models import Campaign, CampaignStep, Enrollment
from crm_app.models.daily_counts import (
    NO_STEP,
    CampaignDailyCounts,
    CampaignDailyFirsts,
    EnrollmentDailyOutcomes,
)


def _pct(part: int, whole: int) -> float | None:
    """A percentage, or None when there is nothing to divide by (shown as a dash)."""
    return round(100.0 * part / whole, 1) if whole else None


@dataclass
class Counts:
    sent: int = 0
    delivered: int = 0
    opened: int = 0  # unique: messages opened at least once
    clicked: int = 0  # unique: messages clicked at least once
    bounced: int = 0
    spam_reports: int = 0
    unsubscribed: int = 0
    # Opens and clicks by people: not Apple's privacy proxy, not link scanners
    # (tracking/engagement.py), shown beside the raw ones.
    human_opened: int = 0
    human_clicked: int = 0

    def __iadd__(self, other: Counts) -> Counts:
        for name in COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    # Delivery, bounces and unsubscribes are shares of what was sent; engagement is a share
    # of delivered. An unsubscribe through our own link needs no SendGrid event: counted
    # against delivered, two unsubscribes of a campaign whose webhook reported one delivery
    # read "200 %".
    @property
    def delivery_rate(self) -> float | None:
        return _pct(self.delivered, self.sent)

    @property
    def bounce_rate(self) -> float | None:
        return _pct(self.bounced, self.sent)

    @property
    def open_rate(self) -> float | None:
        return _pct(self.opened, self.delivered)

    @property
    def click_rate(self) -> float | None:
        return _pct(self.clicked, self.delivered)

    @property
    def human_open_rate(self) -> float | None:
        return _pct(self.human_opened, self.delivered)

    @property
    def human_click_rate(self) -> float | None:
        return _pct(self.human_clicked, self.delivered)

    @property
    def spam_rate(self) -> float | None:
        return _pct(self.spam_reports, self.delivered)

    @property
    def unsubscribe_rate(self) -> float | None:
        return _pct(self.unsubscribed, self.sent)


COUNT_FIELDS = (
    "sent",
    "delivered",
    "opened",
    "clicked",
    "bounced",
    "spam_reports",
    "unsubscribed",
    "human_opened",
    "human_clicked",
)


@dataclass
class EnrollmentOutcomes:
    ended: int = 0  # completed or stopped in the range
    completed: int = 0
    started: int = 0  # enrolled in the range
    converted: int = 0  # of those started, ended by an exit goal (converted_at)

    @property
    def completion_rate(self) -> float | None:
        return _pct(self.completed, self.ended)

    @property
    def conversion_rate(self) -> float | None:
        return _pct(self.converted, self.started)


@dataclass
class CampaignSummary:
    campaign_id: int
    name: str
    status: str
    counts: Counts
    outcomes: EnrollmentOutcomes


@dataclass
class StepRow:
    """One email's figures. Grouped by the step's identity, so a reordered email keeps
    its history; the emails removed since share one row (position None)."""

    position: int | None
    subject: str  # readable: the subject for the sample contact (naming), never source
    counts: Counts


@dataclass
class DayPoint:
    day: date
    sent: int = 0
    opened: int = 0
    clicked: int = 0


@dataclass
class CampaignReport:
    summary: CampaignSummary
    steps: list[StepRow]
    period: DateRange
    series: list[DayPoint] = field(default_factory=list)

    @property
    def funnel(self) -> list[tuple[int, int]]:
        """(step position, sent) in step order: how far the cohort got."""
        return [(row.position, row.counts.sent) for row in self.steps if row.position]


# --- SQL building blocks (one place for what differs between SQLite and PostgreSQL) ---


def add_days(column, days, dialect_name: str):
    """column + `days` days, where `days` may itself be a column."""
    if dialect_name == "postgresql":
        return column + sa.func.make_interval(0, 0, 0, days)  # (years, months, weeks, days)
    # Same text layout as SQLAlchemy's stored values, so string comparison stays correct.
    return sa.func.strftime("%Y-%m-%d %H:%M:%f", column, "+" + sa.cast(days, sa.String) + " days")


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _counts(values) -> Counts:
    return Counts(*(int(v or 0) for v in values))


def _days_in(column, period: DateRange):
    return (column >= period.first, column <= period.last)


def _sums(table: sa.Table, names=COUNT_FIELDS):
    return [sa.func.coalesce(sa.func.sum(table.c[name]), 0) for name in names]


# --- the queries ---


def message_counts_by_campaign(
    session, period: DateRange, campaign_id: int | None = None
) -> dict[int, Counts]:
    """Per campaign, from the daily rollup (a year: a few thousand rows, not every message)."""
    table = CampaignDailyCounts.__table__
    query = (
        sa.select(table.c.campaign_id, *_sums(table))
        .where(*_days_in(table.c.day, period))
        .group_by(table.c.campaign_id)
    )
    if campaign_id is not None:
        query = query.where(table.c.campaign_id == campaign_id)
    return {row[0]: _counts(row[1:]) for row in session.execute(query)}


def enrollment_outcomes(
    session, period: DateRange, campaign_id: int | None = None
) -> dict[int, EnrollmentOutcomes]:
    """Completion (ended in range) and conversion (started in range), per campaign.

    Converted: exactly the enrolments an exit goal ended (converted_at set: a goal event
    the campaign names, or the contact reaching its goal type; experiments/goals.py).
    On PostgreSQL from the daily rollup its triggers keep (a year: a few thousand rows,
    not every enrolment); on SQLite from the enrolments."""
    if is_postgres(session):
        return _outcomes_from_rollup(session, period, campaign_id)
    return outcomes_from_enrollments(session, period, campaign_id)


def _outcomes_from_rollup(
    session, period: DateRange, campaign_id: int | None
) -> dict[int, EnrollmentOutcomes]:
    table = EnrollmentDailyOutcomes.__table__
    sums = [sa.func.sum(table.c[name]) for name in ("ended", "completed", "started", "converted")]
    query = (
        sa.select(table.c.campaign_id, *sums)
        .where(*_days_in(table.c.day, period))
        .group_by(table.c.campaign_id)
        # A campaign counts only with an enrolment in the range, as from the enrolments.
        .having(sa.or_(sums[0] != 0, sums[2] != 0))
    )
    if campaign_id is not None:
        query = query.where(table.c.campaign_id == campaign_id)
    return {
        campaign: EnrollmentOutcomes(*(int(n) for n in counts))
        for campaign, *counts in session.execute(query)
    }


def outcomes_from_enrollments(
    session, period: DateRange, campaign_id: int | None = None
) -> dict[int, EnrollmentOutcomes]:
    """`enrollment_outcomes` counted from the enrolments: ONE scan of those in either
    range (a year's range is every enrolment)."""
    ended = sa.and_(
        Enrollment.status.in_(("completed", "stopped")),
        Enrollment.ended_at >= period.start,
        Enrollment.ended_at < period.end,
    )
    started = sa.and_(Enrollment.enrolled_at >= period.start, Enrollment.enrolled_at < period.end)
    converted = sa.and_(started, Enrollment.converted_at.is_not(None))
    scope = [Enrollment.campaign_id == campaign_id] if campaign_id is not None else []

    rows = session.execute(
        sa.select(
            Enrollment.campaign_id,
            count_where(ended),
            count_where(sa.and_(ended, Enrollment.status == "completed")),
            count_where(started),
            count_where(converted),
        )
        .where(sa.or_(ended, started), *scope)
        .group_by(Enrollment.campaign_id)
    )
    return {campaign: EnrollmentOutcomes(*(int(n) for n in counts)) for campaign, *counts in rows}


def steps_and_days(
    session, campaign_id: int, period: DateRange
) -> tuple[dict[int | None, Counts], list[DayPoint]]:
    """Per-step counts (by step id; None: removed steps) and the per-day series of one
    campaign, from the rollups (crm_app/drip/reporting/daily_counts.py): 2 small queries.

    The series counts sends, first opens and first clicks on the UTC day each happened,
    over the messages sent in the range like every other figure, so it adds up to the
    table; an open after the range's end is counted in the table but not plotted.
    """
    counts, firsts = CampaignDailyCounts.__table__, CampaignDailyFirsts.__table__
    by_step: dict[int | None, Counts] = {}
    points = {day: DayPoint(day) for day in period.days}
    for step_id, day, *values in session.execute(
        sa.select(counts.c.step_id, counts.c.day, *_sums(counts))
        .where(counts.c.campaign_id == campaign_id, *_days_in(counts.c.day, period))
        .group_by(counts.c.step_id, counts.c.day)
    ):
        row = _counts(values)
        key = None if step_id == NO_STEP else step_id
        by_step.setdefault(key, Counts()).__iadd__(row)
        point = points.get(_as_date(day))
        if point is not None:
            point.sent += row.sent
    for day, opened, clicked in session.execute(
        sa.select(firsts.c.day, *_sums(firsts, ("opened", "clicked")))
        .where(
            firsts.c.campaign_id == campaign_id,
            *_days_in(firsts.c.sent_day, period),
            *_days_in(firsts.c.day, period),
        )
        .group_by(firsts.c.day)
    ):
        point = points.get(_as_date(day))
        if point is not None:
            point.opened += int(opened)
            point.clicked += int(clicked)
    return by_step, list(points.values())


# --- what the pages show ---


@dataclass
class AnalyticsOverview:
    period: DateRange
    rows: list[CampaignSummary]

    @property
    def totals(self) -> Counts:
        total = Counts()
        for row in self.rows:
            total += row.counts
        return total


def campaigns_overview(session, period: DateRange) -> AnalyticsOverview:
    """One row per campaign (archived ones only with figures in the range): 4 queries."""
    counts = message_counts_by_campaign(session, period)
    outcomes = enrollment_outcomes(session, period)
    rows = []
    for campaign in session.scalars(sa.select(Campaign).order_by(Campaign.name)):
        if campaign.status == "archived" and campaign.id not in counts | outcomes:
            continue
        rows.append(
            CampaignSummary(
                campaign.id,
                campaign.name,
                campaign.status,
                counts.get(campaign.id, Counts()),
                outcomes.get(campaign.id, EnrollmentOutcomes()),
            )
        )
    return AnalyticsOverview(period, rows)


def campaign_report(session, campaign: Campaign, period: DateRange) -> CampaignReport:
    """Summary, per-step rows and the daily series of one campaign: 4 queries."""
    by_step, series = steps_and_days(session, campaign.id, period)
    current = session.execute(
        sa.select(CampaignStep.id, CampaignStep.position, CampaignStep.subject)
        .where(CampaignStep.campaign_id == campaign.id)
        .order_by(CampaignStep.position)
    ).all()
    # Every current step (zero if nothing went out), then one row for removed ones.
    steps = [
        StepRow(position, subject_title(subject), by_step.pop(step_id, Counts()))
        for step_id, position, subject in current
    ]
    if by_step:
        removed = Counts()
        for counts in by_step.values():
            removed += counts
        steps.append(StepRow(None, "Emails removed from the campaign since", removed))
    totals = Counts()
    for row in steps:
        totals += row.counts
    outcomes = enrollment_outcomes(session, period, campaign.id).get(
        campaign.id, EnrollmentOutcomes()
    )
    summary = CampaignSummary(campaign.id, campaign.name, campaign.status, totals, outcomes)
    return CampaignReport(summary, steps, period, series)
