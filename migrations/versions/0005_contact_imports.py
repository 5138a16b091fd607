"""contact imports: the uploaded CSV files (bytes, options, mapping, progress) and their failed rows

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 04:17:27.879593

"""
from alembic import op
import sqlalchemy as sa

import crm_app.models.types


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'contact_imports',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('filename', sa.String(length=255), nullable=False),
        # The file itself (up to IMPORT_MAX_BYTES): workers may run on other machines.
        sa.Column('content', sa.LargeBinary(), nullable=False),
        sa.Column('size_bytes', sa.Integer(), nullable=False),
        sa.Column('encoding', sa.String(length=20), nullable=False),
        sa.Column('delimiter', sa.String(length=4), nullable=False),
        sa.Column('header', sa.JSON(), nullable=False),
        sa.Column('preview_rows', sa.JSON(), nullable=False),
        sa.Column('mapping', sa.JSON(), nullable=False),
        sa.Column('default_type', sa.String(length=20), nullable=False),
        sa.Column('default_timezone', sa.String(length=64), nullable=False),
        sa.Column('default_owner_id', sa.Integer(), nullable=True),
        sa.Column('on_existing', sa.String(length=10), nullable=False),
        sa.Column('enroll_by_type', sa.Boolean(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('total_rows', sa.Integer(), nullable=False),
        # The resume point: moved by each chunk's commit.
        sa.Column('rows_done', sa.Integer(), nullable=False),
        sa.Column('created_count', sa.Integer(), nullable=False),
        sa.Column('updated_count', sa.Integer(), nullable=False),
        sa.Column('skipped_count', sa.Integer(), nullable=False),
        sa.Column('failed_count', sa.Integer(), nullable=False),
        sa.Column('enrolled_count', sa.Integer(), nullable=False),
        sa.Column('error', sa.Text(), nullable=False),
        sa.Column('created_by', sa.String(length=120), nullable=False),
        sa.Column('created_at', crm_app.models.types.UTCDateTime(), nullable=False),
        sa.Column('started_at', crm_app.models.types.UTCDateTime(), nullable=True),
        sa.Column('heartbeat_at', crm_app.models.types.UTCDateTime(), nullable=True),
        sa.Column('finished_at', crm_app.models.types.UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('draft', 'queued', 'running', 'done', 'failed')",
            name=op.f('ck_contact_imports_status'),
        ),
        sa.CheckConstraint(
            "on_existing IN ('skip', 'update')", name=op.f('ck_contact_imports_on_existing')
        ),
        sa.ForeignKeyConstraint(
            ['default_owner_id'], ['users.id'],
            name=op.f('fk_contact_imports_default_owner_id_users'), ondelete='SET NULL',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_imports')),
    )
    # The Imports page lists the newest first.
    op.create_index('ix_contact_imports_created_at', 'contact_imports', ['created_at'])

    op.create_table(
        'contact_import_failures',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('import_id', sa.Integer(), nullable=False),
        sa.Column('line', sa.Integer(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('cells', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ['import_id'], ['contact_imports.id'],
            name=op.f('fk_contact_import_failures_import_id_contact_imports'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_import_failures')),
        # One failure per line of a file; also the index that lists them in line order.
        sa.UniqueConstraint('import_id', 'line', name='uq_contact_import_failures_line'),
    )


def downgrade():
    op.drop_table('contact_import_failures')
    op.drop_index('ix_contact_imports_created_at', table_name='contact_imports')
    op.drop_table('contact_imports')
