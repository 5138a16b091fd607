"""team: user sender identity and session versions, workspace settings, password links, audit log

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 04:16:57

"""
from alembic import op
import sqlalchemy as sa

import crm_app.models.types


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    # Users: their sender identity, and the version every login session must carry
    # (bumped on logout, new password, disable). Existing users start at version 1.
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signature', sa.Text(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('from_name', sa.String(length=120), server_default='', nullable=False))
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='1', nullable=False))

    # The workspace's settings: a single row (id = 1); no row means nothing set yet.
    op.create_table('workspace_settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sender_name', sa.String(length=120), nullable=True),
    sa.Column('sender_signature', sa.Text(), server_default='', nullable=False),
    sa.Column('updated_at', crm_app.models.types.UTCDateTime(), nullable=False),
    sa.Column('updated_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint('id = 1', name=op.f('ck_workspace_settings_single_row')),
    sa.ForeignKeyConstraint(['updated_by_id'], ['users.id'], name=op.f('fk_workspace_settings_updated_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspace_settings'))
    )

    # One-time set-password links: only the SHA-256 of the secret is stored.
    op.create_table('password_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', crm_app.models.types.UTCDateTime(), nullable=False),
    sa.Column('expires_at', crm_app.models.types.UTCDateTime(), nullable=False),
    sa.Column('used_at', crm_app.models.types.UTCDateTime(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_password_links_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_password_links_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_password_links')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_password_links_token_hash'))
    )
    with op.batch_alter_table('password_links', schema=None) as batch_op:
        batch_op.create_index('ix_password_links_user_id', ['user_id'], unique=False)

    # The audit log, read newest first: whole, by user, or by kind (target type).
    op.create_table('audit_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', crm_app.models.types.UTCDateTime(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=254), nullable=False),
    sa.Column('action', sa.String(length=60), nullable=False),
    sa.Column('target_type', sa.String(length=40), nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=True),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_audit_entries_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_entries'))
    )
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entries_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_audit_entries_user_created', ['user_id', 'created_at'], unique=False)
        batch_op.create_index('ix_audit_entries_type_created', ['target_type', 'created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entries_type_created')
        batch_op.drop_index('ix_audit_entries_user_created')
        batch_op.drop_index('ix_audit_entries_created_at')
    op.drop_table('audit_entries')

    with op.batch_alter_table('password_links', schema=None) as batch_op:
        batch_op.drop_index('ix_password_links_user_id')
    op.drop_table('password_links')

    op.drop_table('workspace_settings')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_version')
        batch_op.drop_column('from_name')
        batch_op.drop_column('signature')
