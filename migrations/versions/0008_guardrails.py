"""guardrails: replies (Inbound Parse), stop on reply, GDPR erasure with hashed suppressions, postal address

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 04:48:17

"""
from alembic import op
import sqlalchemy as sa

import crm_app.models.types


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    # What is left of an erased contact's address: a keyed hash, never the address.
    op.create_table('hashed_suppressions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email_hash', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('created_at', crm_app.models.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hashed_suppressions')),
    sa.UniqueConstraint('email_hash', name=op.f('uq_hashed_suppressions_email_hash'))
    )

    # Replies received through SendGrid's Inbound Parse, tied to the message they answer.
    op.create_table('email_replies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('from_email', sa.String(length=254), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('first_lines', sa.Text(), nullable=False),
    sa.Column('is_automatic', sa.Boolean(), nullable=False),
    sa.Column('automatic_reason', sa.String(length=120), nullable=False),
    sa.Column('stopped_enrollment_id', sa.Integer(), nullable=True),
    sa.Column('email_message_id', sa.String(length=255), nullable=True),
    sa.Column('received_at', crm_app.models.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_email_replies_campaign_id_campaigns'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_email_replies_contact_id_contacts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_email_replies_message_id_messages'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['stopped_enrollment_id'], ['enrollments.id'], name=op.f('fk_email_replies_stopped_enrollment_id_enrollments'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_email_replies')),
    sa.UniqueConstraint('email_message_id', name=op.f('uq_email_replies_email_message_id'))
    )
    with op.batch_alter_table('email_replies', schema=None) as batch_op:
        # A contact's replies, newest first (export, erasure); a message's replies.
        batch_op.create_index('ix_email_replies_contact_received', ['contact_id', 'received_at'], unique=False)
        batch_op.create_index('ix_email_replies_message_id', ['message_id'], unique=False)

    # Existing campaigns stop on a human reply too: that is the default. A plain ADD
    # COLUMN: a batch rebuild of campaigns on SQLite would DROP TABLE it, which with
    # foreign keys on deletes its steps and enrolments.
    op.add_column('campaigns', sa.Column('stop_on_reply', sa.Boolean(), server_default=sa.true(), nullable=False))

    # A plain ADD COLUMN (batch mode would rebuild contacts on SQLite and lose the
    # expression index uq_contacts_email_lower, which it cannot reflect).
    op.add_column('contacts', sa.Column('erased_at', crm_app.models.types.UTCDateTime(), nullable=True))
    # The few erased contacts: each Event Webhook batch asks which of its contacts are
    # (a partial index, empty until the first erasure, instead of a probe per contact).
    op.create_index('ix_contacts_erased', 'contacts', ['id'], unique=False,
                    sqlite_where=sa.text('erased_at IS NOT NULL'),
                    postgresql_where=sa.text('erased_at IS NOT NULL'))

    with op.batch_alter_table('workspace_settings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('postal_address', sa.Text(), server_default='', nullable=False))


def downgrade():
    # ALTER TABLE .. DROP COLUMN (SQLite 3.35+), never batch mode: a batch rebuild of
    # campaigns would DROP TABLE it (cascading to its steps and enrolments, foreign
    # keys being on) and re-create its column CHECKs as table CHECKs, which the next
    # downgrade's DROP COLUMN of campaigns.reentry would then trip on.
    op.drop_column('workspace_settings', 'postal_address')
    op.drop_index('ix_contacts_erased', table_name='contacts')
    op.drop_column('contacts', 'erased_at')

    op.drop_column('campaigns', 'stop_on_reply')

    with op.batch_alter_table('email_replies', schema=None) as batch_op:
        batch_op.drop_index('ix_email_replies_message_id')
        batch_op.drop_index('ix_email_replies_contact_received')
    op.drop_table('email_replies')

    op.drop_table('hashed_suppressions')
