"""enrollments: the due and ended_at indexes leave out the rows they can never find

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 19:00:00

An enrolment whose email is on the way has next_send_at NULL (the tick clears it), and
an active one has ended_at NULL; no query looks for either NULL in these two indexes
(the tick asks next_send_at <= now, analytics ended_at in a range). Left out, the
tick's UPDATE of 100,000 due enrolments writes two index entries fewer per row (its
UPDATE changes an indexed column, so it writes one in every index that keeps the row).
"""

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

DUE = "status = 'active' AND next_send_at IS NOT NULL"
ENDED = 'ended_at IS NOT NULL'


def _index(name: str, column: str, where: str | None) -> None:
    predicate = {} if where is None else {
        'sqlite_where': sa.text(where), 'postgresql_where': sa.text(where)
    }
    op.create_index(name, 'enrollments', [column], unique=False, **predicate)


def upgrade():
    op.drop_index('ix_enrollments_due', table_name='enrollments')
    _index('ix_enrollments_due', 'next_send_at', DUE)
    op.drop_index('ix_enrollments_ended_at', table_name='enrollments')
    _index('ix_enrollments_ended_at', 'ended_at', ENDED)


def downgrade():
    op.drop_index('ix_enrollments_ended_at', table_name='enrollments')
    _index('ix_enrollments_ended_at', 'ended_at', None)
    op.drop_index('ix_enrollments_due', table_name='enrollments')
    _index('ix_enrollments_due', 'next_send_at', "status = 'active'")
