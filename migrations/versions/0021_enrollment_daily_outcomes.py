"""enrollment_daily_outcomes: enrolments started, converted, ended and completed per
campaign and UTC day, kept by statement triggers on PostgreSQL

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 09:30:00

The analytics overview counted enrolment outcomes with one scan of every enrolment in
its range: for a year at 250,000 enrolments, 88-110 ms of the page's 102-107 (aim 100,
bench/analytics_bench.py). Each enrolment counts as started (and converted, once an exit
goal ended it) on the UTC day it was enrolled, and as ended (and completed) on the day it
ended. A trigger per INSERT, UPDATE and DELETE statement on `enrollments` appends what
its new rows count minus what its old rows counted, one row per campaign and day that
changed: every path that writes enrolments goes through them, the cascades of a deleted
contact or campaign too, and a statement that changes no counted column (the tick
clearing a due date) appends nothing. Appending takes no lock on a row another writer
needs: upserting one row per campaign and day would make an import and a worker
completing enrolments wait on each other, and deadlock when each locks two campaigns'
rows in another order. The tick job merges the rows of each campaign and day
(`compact_enrollment_outcomes`). SQLite counts from `enrollments` as before: it has no
statement triggers.
"""

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None

# What one enrolment counts: started (and converted) on its enrolment day; ended (and
# completed) on the day it ended. `sign`: +1 for a new row, -1 for an old one.
CONTRIBUTIONS = """
    SELECT campaign_id, enrolled_at::date AS day, sign AS started,
           CASE WHEN converted_at IS NOT NULL THEN sign ELSE 0 END AS converted,
           0 AS ended, 0 AS completed
    FROM changed
    UNION ALL
    SELECT campaign_id, ended_at::date, 0, 0, sign,
           CASE WHEN status = 'completed' THEN sign ELSE 0 END
    FROM changed
    WHERE status IN ('completed', 'stopped') AND ended_at IS NOT NULL
"""
CHANGED = {
    'INSERT': 'SELECT *, 1 AS sign FROM new_rows',
    'DELETE': 'SELECT *, -1 AS sign FROM old_rows',
    'UPDATE': 'SELECT *, 1 AS sign FROM new_rows UNION ALL SELECT *, -1 AS sign FROM old_rows',
}
TRANSITIONS = {
    'INSERT': 'NEW TABLE AS new_rows',
    'DELETE': 'OLD TABLE AS old_rows',
    'UPDATE': 'OLD TABLE AS old_rows NEW TABLE AS new_rows',
}


def _postgres() -> bool:
    return op.get_bind().dialect.name == 'postgresql'


def _append(changed: str) -> str:
    """The INSERT that appends what the rows of `changed` count, per campaign and day."""
    return f"""
        INSERT INTO enrollment_daily_outcomes
            (campaign_id, day, started, converted, ended, completed)
        SELECT campaign_id, day, sum(started), sum(converted), sum(ended), sum(completed)
        FROM (WITH changed AS ({changed}) {CONTRIBUTIONS}) AS counted
        GROUP BY campaign_id, day
        HAVING sum(started) <> 0 OR sum(converted) <> 0 OR sum(ended) <> 0
            OR sum(completed) <> 0
    """


def upgrade():
    if not _postgres():
        return
    op.create_table(
        'enrollment_daily_outcomes',
        sa.Column('id', sa.BigInteger(), nullable=False),
        # No foreign key: a deleted campaign's enrolments take their counts back as they go.
        sa.Column('campaign_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('started', sa.Integer(), server_default='0', nullable=False),
        sa.Column('converted', sa.Integer(), server_default='0', nullable=False),
        sa.Column('ended', sa.Integer(), server_default='0', nullable=False),
        sa.Column('completed', sa.Integer(), server_default='0', nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_enrollment_daily_outcomes')),
    )
    op.create_index(
        'ix_enrollment_daily_outcomes_day', 'enrollment_daily_outcomes', ['day', 'campaign_id']
    )
    for operation, changed in CHANGED.items():
        name = f'enrollments_count_outcomes_{operation.lower()}'
        op.execute(
            f"""
            CREATE FUNCTION {name}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                {_append(changed)};
                RETURN NULL;
            END $$
            """
        )
        op.execute(
            f"""
            CREATE TRIGGER {name}
            AFTER {operation} ON enrollments REFERENCING {TRANSITIONS[operation]}
            FOR EACH STATEMENT EXECUTE FUNCTION {name}()
            """
        )
    op.execute(_append('SELECT *, 1 AS sign FROM enrollments'))


def downgrade():
    if not _postgres():
        return
    for operation in CHANGED:
        name = f'enrollments_count_outcomes_{operation.lower()}'
        op.execute(f'DROP TRIGGER {name} ON enrollments')
        op.execute(f'DROP FUNCTION {name}()')
    op.drop_table('enrollment_daily_outcomes')
