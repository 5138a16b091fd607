"""messages (one row per enrolment + step, the delivery state machine) and system_state

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 08:18:01.138181

"""
from alembic import op
import sqlalchemy as sa

import crm_app.models.types


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('system_state',
    sa.Column('key', sa.String(length=60), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated_at', crm_app.models.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_system_state'))
    )
    op.create_table('messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enrollment_id', sa.Integer(), nullable=False),
    sa.Column('step_id', sa.Integer(), nullable=True),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('step_position', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('template_version', sa.Integer(), nullable=True),
    sa.Column('to_email', sa.String(length=254), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('html', sa.Text(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('provider_message_id', sa.String(length=200), nullable=True),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('created_at', crm_app.models.types.UTCDateTime(), nullable=False),
    sa.Column('enqueued_at', crm_app.models.types.UTCDateTime(), nullable=True),
    sa.Column('claimed_at', crm_app.models.types.UTCDateTime(), nullable=True),
    sa.Column('sent_at', crm_app.models.types.UTCDateTime(), nullable=True),
    sa.Column('next_attempt_at', crm_app.models.types.UTCDateTime(), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'sending', 'sent', 'failed', 'in_doubt', 'skipped')", name=op.f('ck_messages_status')),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_messages_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_messages_contact_id_contacts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], name=op.f('fk_messages_enrollment_id_enrollments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['step_id'], ['campaign_steps.id'], name=op.f('fk_messages_step_id_campaign_steps'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages')),
    sa.UniqueConstraint('enrollment_id', 'step_id', name='uq_messages_enrollment_step')
    )
    # The tick's lease queries and the admin lists (failed, in doubt) go by status.
    op.create_index('ix_messages_status_enqueued', 'messages', ['status', 'enqueued_at'])
    op.create_index('ix_messages_contact_id', 'messages', ['contact_id'])
    # Event Webhook lookups arrive by SendGrid's message id.
    op.create_index(op.f('ix_messages_provider_message_id'), 'messages', ['provider_message_id'])


def downgrade():
    op.drop_index(op.f('ix_messages_provider_message_id'), table_name='messages')
    op.drop_index('ix_messages_contact_id', table_name='messages')
    op.drop_index('ix_messages_status_enqueued', table_name='messages')
    op.drop_table('messages')
    op.drop_table('system_state')
