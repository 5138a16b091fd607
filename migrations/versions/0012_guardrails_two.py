"""guardrails, part two: machine engagement, circuit breaker, frequency cap, in-doubt resolution

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 07:00:00

- email_events.machine: an open by Apple's privacy proxy or a scanner's click, kept
  but counted apart; messages.human_opened_at / human_clicked_at: the first ones a
  person made (analytics counts them beside the raw first-seen columns).
- campaigns: the circuit breaker's window and thresholds, and why/when/by whom the
  campaign was last paused.
- enrollments.cap_held_until: the frequency cap held the next email until then.
- messages.in_doubt_resolution: how an in-doubt email was settled (dashboard counts,
  a partial index that stays small).

Plain ADD COLUMN only: a batch rebuild of campaigns or contacts on SQLite would DROP
TABLE them, which with foreign keys on deletes their enrolments.
"""

from alembic import op
import sqlalchemy as sa

import crm_app.models.types


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

RESOLVED = sa.text('in_doubt_resolution IS NOT NULL')


def upgrade():
    op.add_column('email_events', sa.Column('machine', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('messages', sa.Column('human_opened_at', crm_app.models.types.UTCDateTime(), nullable=True))
    op.add_column('messages', sa.Column('human_clicked_at', crm_app.models.types.UTCDateTime(), nullable=True))
    op.add_column('messages', sa.Column('in_doubt_resolution', sa.String(length=16), nullable=True))
    op.create_index('ix_messages_in_doubt_resolution', 'messages', ['in_doubt_resolution'],
                    unique=False, sqlite_where=RESOLVED, postgresql_where=RESOLVED)
    op.add_column('campaigns', sa.Column('breaker_sends', sa.Integer(), server_default='200', nullable=False))
    op.add_column('campaigns', sa.Column('breaker_bounce_pct', sa.Float(), server_default='5', nullable=False))
    op.add_column('campaigns', sa.Column('breaker_spam_pct', sa.Float(), server_default='0.3', nullable=False))
    op.add_column('campaigns', sa.Column('paused_reason', sa.Text(), server_default='', nullable=False))
    op.add_column('campaigns', sa.Column('paused_by', sa.String(length=120), server_default='', nullable=False))
    op.add_column('campaigns', sa.Column('paused_at', crm_app.models.types.UTCDateTime(), nullable=True))
    op.add_column('campaigns', sa.Column('breaker_counts_from', crm_app.models.types.UTCDateTime(), nullable=True))
    op.add_column('enrollments', sa.Column('cap_held_until', crm_app.models.types.UTCDateTime(), nullable=True))


def downgrade():
    # ALTER TABLE .. DROP COLUMN (SQLite 3.35+), never batch mode (see the docstring).
    op.drop_column('enrollments', 'cap_held_until')
    for column in ('breaker_counts_from', 'paused_at', 'paused_by', 'paused_reason', 'breaker_spam_pct',
                   'breaker_bounce_pct', 'breaker_sends'):
        op.drop_column('campaigns', column)
    op.drop_index('ix_messages_in_doubt_resolution', table_name='messages')
    for column in ('in_doubt_resolution', 'human_clicked_at', 'human_opened_at'):
        op.drop_column('messages', column)
    op.drop_column('email_events', 'machine')
