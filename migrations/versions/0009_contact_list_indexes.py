"""contact list and dashboard at scale: a searchable text column, an index per sort order, trigram search

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 09:00:00

- contacts.search_text: a generated column (names, email, company, title, industry,
  custom fields) that the list's search reads. PostgreSQL stores it (STORED is the
  only kind it has) and indexes it with pg_trgm, so ILIKE '%tanaka%' is an index scan;
  SQLite computes it on read (VIRTUAL: the only kind ALTER TABLE can add there, and
  rebuilding `contacts` in batch mode would cascade-delete every enrolment through
  the foreign keys).
- One index per order of the list, each ending in the id (keyset paging), replacing
  the single-column ix_contacts_contact_type (the type index now also gives name order).
- A small partial index on the "not_enrolled" timeline rows, read when a paused
  campaign resumes, and one on active enrolments by campaign, which the dashboard
  counts (up to a cap).

On a large PostgreSQL table, run this migration at a quiet moment: the indexes are
built inside the migration's transaction (not CONCURRENTLY) and lock writes meanwhile.
"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# As in crm_app/models/contact.py (SEARCH_TEXT_SQL), copied so this file never changes.
SEARCH_TEXT_SQL = (
    "lower(first_name || ' ' || last_name || ' ' || email || ' ' || company || ' ' || title"
    " || ' ' || industry || ' ' || CAST(custom_fields AS TEXT))"
)
LAST, FIRST = sa.text("lower(last_name)"), sa.text("lower(first_name)")
NOT_ENROLLED = sa.text("kind = 'not_enrolled'")
ACTIVE = sa.text("status = 'active'")


def _is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade():
    postgres = _is_postgres()
    if postgres:
        # A trusted extension since PostgreSQL 13: the database owner may create it.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.add_column(
        "contacts",
        sa.Column("search_text", sa.Text(), sa.Computed(SEARCH_TEXT_SQL, persisted=postgres)),
    )
    op.drop_index("ix_contacts_contact_type", table_name="contacts")
    op.create_index("ix_contacts_name_order", "contacts", [LAST, FIRST, "id"])
    op.create_index("ix_contacts_type_name_order", "contacts", ["contact_type", LAST, FIRST, "id"])
    op.create_index("ix_contacts_email_order", "contacts", [sa.text("lower(email)"), "id"])
    op.create_index(
        "ix_contacts_company_order", "contacts", [sa.text("lower(company)"), LAST, FIRST, "id"]
    )
    op.create_index("ix_contacts_created_order", "contacts", ["created_at", "id"])
    if postgres:
        op.create_index(
            "ix_contacts_search_trgm",
            "contacts",
            ["search_text"],
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        )
    op.create_index(
        "ix_enrollments_active_campaign",
        "enrollments",
        ["campaign_id"],
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
    op.create_index(
        "ix_activities_not_enrolled",
        "activities",
        ["campaign_id", "contact_id"],
        sqlite_where=NOT_ENROLLED,
        postgresql_where=NOT_ENROLLED,
    )


def downgrade():
    op.drop_index("ix_activities_not_enrolled", table_name="activities")
    op.drop_index("ix_enrollments_active_campaign", table_name="enrollments")
    if _is_postgres():
        op.drop_index("ix_contacts_search_trgm", table_name="contacts")
    for name in (
        "ix_contacts_created_order",
        "ix_contacts_company_order",
        "ix_contacts_email_order",
        "ix_contacts_type_name_order",
        "ix_contacts_name_order",
    ):
        op.drop_index(name, table_name="contacts")
    op.create_index("ix_contacts_contact_type", "contacts", ["contact_type"])
    op.drop_column("contacts", "search_text")
    # pg_trgm stays: other objects may use it, and keeping it harms nothing.
