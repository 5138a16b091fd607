"""analytics rollups: campaign_daily_counts and campaign_daily_firsts, maintained on write

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 07:00:00

- campaign_daily_counts: per campaign, step (its identity; 0 for a removed step) and UTC
  day sent, the messages sent and how many of them were delivered, opened, clicked,
  bounced, reported as spam, unsubscribed, opened and clicked by a person
  (not Apple's privacy proxy or a link scanner). The analytics cohort (messages sent in a
  range) is a sum over days of these rows instead of a scan of every message.
- campaign_daily_firsts: per campaign, day sent and day it happened, the first opens and
  first clicks (the daily series).

Both are filled here from the messages already sent (crm_app/drip/reporting/daily_counts.py
keeps them from then on, in the transaction of each write). Plain create_table: no batch
mode, no rebuild of messages or campaigns.
"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

COUNTED = (
    ("sent", "sent_at"),
    ("delivered", "delivered_at"),
    ("opened", "opened_at"),
    ("clicked", "clicked_at"),
    ("bounced", "bounced_at"),
    ("spam_reports", "spam_reported_at"),
    ("unsubscribed", "unsubscribed_at"),
    ("human_opened", "human_opened_at"),
    ("human_clicked", "human_clicked_at"),
)


def _count(name: str) -> sa.Column:
    return sa.Column(name, sa.Integer(), nullable=False, server_default="0")


def _day(column: str, dialect: str) -> str:
    return f"CAST({column} AS DATE)" if dialect == "postgresql" else f"date({column})"


def upgrade():
    op.create_table(
        "campaign_daily_counts",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *(_count(name) for name, _ in COUNTED),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("campaign_id", "step_id", "day"),
    )
    op.create_table(
        "campaign_daily_firsts",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("sent_day", sa.Date(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        _count("opened"),
        _count("clicked"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("campaign_id", "sent_day", "day"),
    )
    dialect = op.get_bind().dialect.name
    sent_day = _day("sent_at", dialect)
    tallies = ", ".join(
        f"SUM(CASE WHEN {column} IS NOT NULL THEN 1 ELSE 0 END)" for _, column in COUNTED
    )
    op.execute(
        f"INSERT INTO campaign_daily_counts (campaign_id, step_id, day, "
        f"{', '.join(name for name, _ in COUNTED)}) "
        f"SELECT campaign_id, coalesce(step_id, 0), {sent_day}, {tallies} "
        f"FROM messages WHERE sent_at IS NOT NULL "
        f"GROUP BY campaign_id, coalesce(step_id, 0), {sent_day}"
    )
    for name, column in (("opened", "opened_at"), ("clicked", "clicked_at")):
        day = _day(column, dialect)
        op.execute(
            f"INSERT INTO campaign_daily_firsts (campaign_id, sent_day, day, {name}) "
            f"SELECT campaign_id, {sent_day}, {day}, COUNT(*) FROM messages "
            f"WHERE sent_at IS NOT NULL AND {column} IS NOT NULL "
            f"GROUP BY campaign_id, {sent_day}, {day} "
            f"ON CONFLICT (campaign_id, sent_day, day) "
            f"DO UPDATE SET {name} = excluded.{name}"
        )


def downgrade():
    op.drop_table("campaign_daily_firsts")
    op.drop_table("campaign_daily_counts")
