"""The enrolment outcomes' rollup (`enrollment_daily_outcomes`, PostgreSQL): its
triggers append what each statement on `enrollments` changed, per campaign and UTC day
(migration 0021); this merges those rows, so a year's figures read a row per campaign
and day, not one per statement that wrote enrolments. No HTTP in here."""

from __future__ import annotations

import sqlalchemy as sa

from crm_app.drip.common.sql import is_postgres

# Rows merged by one transaction: what concurrent triggers append meanwhile is not in
# its snapshot and stays, and a second merge waits on the rows this one deletes, then
# finds them gone. Sums that came to nothing leave no row.
_MERGE = sa.text(
    """
    WITH merged AS (
        DELETE FROM enrollment_daily_outcomes
        WHERE (campaign_id, day) IN (
            SELECT campaign_id, day FROM enrollment_daily_outcomes
            GROUP BY campaign_id, day HAVING count(*) > 1
        )
        RETURNING campaign_id, day, started, converted, ended, completed
    ), added AS (
        INSERT INTO enrollment_daily_outcomes
            (campaign_id, day, started, converted, ended, completed)
        SELECT campaign_id, day, sum(started), sum(converted), sum(ended), sum(completed)
        FROM merged
        GROUP BY campaign_id, day
        HAVING sum(started) <> 0 OR sum(converted) <> 0 OR sum(ended) <> 0
            OR sum(completed) <> 0
    )
    SELECT count(*) FROM merged
    """
)


def compact_enrollment_outcomes(session) -> int:
    """Merge each campaign and day's rows into one; returns how many rows were merged
    (SQLite has no rollup: 0). The caller commits."""
    if not is_postgres(session):
        return 0
    return session.scalar(_MERGE)
