"""On PostgreSQL the analytics' enrolment outcomes come from a daily rollup that
statement triggers on `enrollments` append to (migration 0021) and the tick job merges.
Whatever writes the enrolments (an INSERT of many, an UPDATE of some, a DELETE, the
cascade of a deleted contact or campaign), merged or not, the rollup gives what a count
of the enrolments gives, for every range and campaign."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from crm_app.drip.reporting.analytics import enrollment_outcomes, outcomes_from_enrollments
from crm_app.drip.reporting.date_range import DateRange
from crm_app.drip.reporting.outcome_rollup import compact_enrollment_outcomes
from crm_app.extensions import db
from crm_app.models import Campaign, Contact, Enrollment
from crm_app.models.daily_counts import EnrollmentDailyOutcomes

TODAY = date(2026, 6, 30)
PERIODS = [
    DateRange(TODAY, TODAY),
    DateRange(TODAY - timedelta(days=6), TODAY),
    DateRange(TODAY - timedelta(days=29), TODAY),
    DateRange(TODAY - timedelta(days=364), TODAY),
    DateRange(TODAY - timedelta(days=40), TODAY - timedelta(days=20)),
]


@pytest.fixture
def postgres(app):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite counts from the enrolments: it has no statement triggers")


def _moment(rng: random.Random) -> datetime:
    return datetime.combine(TODAY, datetime.min.time(), tzinfo=UTC) - timedelta(
        minutes=rng.randint(0, 60 * 24 * 60)
    )


def _ended_rows(contacts: list[Contact], campaigns: dict, rng: random.Random) -> list[dict]:
    """Completed and stopped enrolments (no active one: one per contact and campaign)."""
    rows = []
    for contact in contacts:
        for campaign in rng.sample(list(campaigns.values()), 2):
            enrolled_at = _moment(rng)
            status = rng.choice(["completed", "stopped"])
            rows.append(
                {
                    "contact_id": contact.id,
                    "campaign_id": campaign.id,
                    "status": status,
                    "enrolled_at": enrolled_at,
                    "ended_at": enrolled_at + timedelta(hours=rng.randint(1, 24 * 20)),
                    "converted_at": enrolled_at
                    if status == "stopped" and rng.random() < 0.5
                    else None,
                }
            )
    return rows


def _assert_rollup_counts_as_the_enrolments(session, campaigns: dict) -> None:
    for period in PERIODS:
        assert enrollment_outcomes(session, period) == outcomes_from_enrollments(session, period)
        for campaign in campaigns.values():
            one = campaign.id
            assert enrollment_outcomes(session, period, one) == outcomes_from_enrollments(
                session, period, one
            )


def _rows_per_day(session) -> list[int]:
    table = EnrollmentDailyOutcomes.__table__
    counted = (
        sa.select(sa.func.count()).select_from(table).group_by(table.c.campaign_id, table.c.day)
    )
    return list(session.scalars(counted))


def _merge(session, campaigns: dict) -> None:
    assert max(_rows_per_day(session)) > 1  # a row per statement, before
    assert compact_enrollment_outcomes(session) > 0
    session.commit()
    assert set(_rows_per_day(session)) == {1}
    _assert_rollup_counts_as_the_enrolments(session, campaigns)


def test_the_rollup_counts_what_the_enrolments_count_whatever_writes_them(
    postgres, session, make_contact, campaigns
):
    rng = random.Random(21)
    contacts = [make_contact(rng.choice(list(campaigns))) for _ in range(12)]
    session.execute(sa.insert(Enrollment), _ended_rows(contacts, campaigns, rng))
    session.commit()
    assert session.scalar(sa.select(sa.func.count()).select_from(EnrollmentDailyOutcomes)) > 0
    _assert_rollup_counts_as_the_enrolments(session, campaigns)

    ids = list(session.scalars(sa.select(Enrollment.id).order_by(Enrollment.id)))
    # Ended now, some by an exit goal; one moved to another day and campaign.
    ending = rng.sample(ids, 8)
    session.execute(
        sa.update(Enrollment)
        .where(Enrollment.id.in_(ending), Enrollment.status == "active")
        .values(status="stopped", ended_at=_moment(rng), converted_at=_moment(rng))
    )
    session.execute(
        sa.update(Enrollment)
        .where(Enrollment.id.in_(ending[:4]), Enrollment.status != "active")
        .values(status="completed", converted_at=None)
    )
    moved = next(i for i in ids if i not in ending)
    session.execute(
        sa.update(Enrollment)
        .where(Enrollment.id == moved, Enrollment.status != "active")
        .values(enrolled_at=_moment(rng), campaign_id=campaigns["client"].id)
    )
    session.commit()
    _assert_rollup_counts_as_the_enrolments(session, campaigns)
    _merge(session, campaigns)

    # A statement that changes no counted column writes nothing to the rollup.
    before = session.execute(sa.select(EnrollmentDailyOutcomes.__table__)).all()
    session.execute(sa.update(Enrollment).values(next_send_at=None))
    session.commit()
    assert session.execute(sa.select(EnrollmentDailyOutcomes.__table__)).all() == before

    gone_campaign = campaigns["prospect"].id
    session.execute(sa.delete(Enrollment).where(Enrollment.id.in_(rng.sample(ids, 5))))
    session.execute(sa.delete(Contact).where(Contact.id == contacts[0].id))
    session.execute(sa.delete(Campaign).where(Campaign.id == gone_campaign))
    session.commit()
    left = {k: c for k, c in campaigns.items() if k != "prospect"}
    _assert_rollup_counts_as_the_enrolments(session, left)
    _merge(session, left)
    assert enrollment_outcomes(session, PERIODS[3], gone_campaign) == {}
