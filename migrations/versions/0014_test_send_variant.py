"""test sends remember which A/B variant they sent

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 14:00:00

- test_sends.variant_key: the running variant a test sent ("" for the email's base
  text). Plain add_column with a server default: no batch mode, no table rebuild.
"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        'test_sends',
        sa.Column('variant_key', sa.String(length=1), nullable=False, server_default=''),
    )


def downgrade():
    op.drop_column('test_sends', 'variant_key')
