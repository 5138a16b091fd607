"""experiments and personalisation: A/B variants, content blocks, step conditions, exit goals

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-02 07:00:00

- step_variants: an email's A/B variants; messages.variant_id records the one each
  email used (kept on retry) and indexes the per-variant results.
- content_blocks: named blocks chosen per contact by rules, {{ block("name") }}.
- campaign_steps.condition: "send only if" (JSON; NULL: always).
- campaigns.goal_events: the goal events that end an enrolment as converted;
  enrollments.converted_at: when one did (what analytics counts as a conversion).

Plain ADD COLUMN only: batch mode would rebuild campaigns, messages or enrollments on
SQLite, and dropping those tables cascades through their foreign keys.
"""

from alembic import op
import sqlalchemy as sa

import crm_app.models.types


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0009'
branch_labels = None
depends_on = None

def upgrade():
    op.create_table('step_variants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('step_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=1), nullable=False),
    sa.Column('weight', sa.Integer(), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('body_html', sa.Text(), nullable=False),
    sa.Column('body_text', sa.Text(), nullable=False),
    sa.Column('created_at', crm_app.models.types.UTCDateTime(), nullable=False),
    sa.Column('retired_at', crm_app.models.types.UTCDateTime(), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.CheckConstraint('weight BETWEEN 1 AND 99', name=op.f('ck_step_variants_weight')),
    sa.ForeignKeyConstraint(['step_id'], ['campaign_steps.id'], name=op.f('fk_step_variants_step_id_campaign_steps'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_step_variants'))
    )
    op.create_index('ix_step_variants_step_id', 'step_variants', ['step_id'], unique=False)
    op.create_table('content_blocks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('rules', sa.JSON(), nullable=False),
    sa.Column('default_content', sa.Text(), nullable=False),
    sa.Column('updated_at', crm_app.models.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_content_blocks')),
    sa.UniqueConstraint('name', name=op.f('uq_content_blocks_name'))
    )
    op.add_column('campaigns', sa.Column('goal_events', sa.Text(), server_default='', nullable=False))
    op.add_column('campaign_steps', sa.Column('condition', sa.JSON(), nullable=True))
    op.add_column('enrollments', sa.Column('converted_at', crm_app.models.types.UTCDateTime(), nullable=True))
    # A plain id (no foreign key: SQLite cannot ADD one with ON DELETE SET NULL).
    op.add_column('messages', sa.Column('variant_id', sa.Integer(), nullable=True))
    op.create_index('ix_messages_variant_id', 'messages', ['variant_id'], unique=False)


def downgrade():
    op.drop_index('ix_messages_variant_id', table_name='messages')
    op.drop_column('messages', 'variant_id')
    op.drop_column('enrollments', 'converted_at')
    op.drop_column('campaign_steps', 'condition')
    op.drop_column('campaigns', 'goal_events')
    op.drop_table('content_blocks')
    op.drop_index('ix_step_variants_step_id', table_name='step_variants')
    op.drop_table('step_variants')
