"""messages: no foreign keys of their own for contact_id and campaign_id on PostgreSQL

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 16:00:00

A message's contact_id and campaign_id are its enrolment's, copied; deleting a contact
or a campaign deletes its enrolments (CASCADE) and each enrolment its messages (CASCADE),
so these two keys added no cascade, only a check that locked one random contact row per
message the tick created (a third of the tick's INSERT at 1,000,000 contacts).
PostgreSQL drops them; SQLite cannot drop a constraint without rebuilding `messages`,
so it keeps them (the model says so: `sqlite_only`).
"""

from alembic import op


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

KEYS = (
    ('fk_messages_contact_id_contacts', 'contact_id', 'contacts'),
    ('fk_messages_campaign_id_campaigns', 'campaign_id', 'campaigns'),
)


def _postgres() -> bool:
    return op.get_bind().dialect.name == 'postgresql'


def upgrade():
    if _postgres():
        for name, _, _ in KEYS:
            op.drop_constraint(name, 'messages', type_='foreignkey')


def downgrade():
    if _postgres():
        for name, column, table in KEYS:
            op.create_foreign_key(name, 'messages', table, [column], ['id'], ondelete='CASCADE')
