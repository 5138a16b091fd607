"""authoring: enrolments follow a step's identity, re-entry rules, email versions, test sends

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 09:00:00

Schema and data in one file because they interlock: the step an enrolment waits
for moves from a position (enrollments.current_step) to an identity
(enrollments.current_step_id), filled from the position before the old column
goes; messages.step_position goes too (messages.step_id already names the step).

SQLite: every column is added and dropped with its own ALTER TABLE (SQLite 3.35+),
never by batch mode's table rebuild: rebuilding enrollments or messages means a
DROP TABLE, which with foreign keys on (the app turns them on for every
connection) would cascade-delete the messages and events that point at them.
"""

import sqlalchemy as sa
from alembic import op

import crm_app.models.types

# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

REENTRY_CHECK = "reentry IN ('resume', 'restart', 'never')"
ENTRY_CHECK = "entry IN ('first', 'resumed', 'restarted')"
STEP_FK = "fk_enrollments_current_step_id_campaign_steps"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _create_tables() -> None:
    op.create_table(
        "campaign_step_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("saved_by", sa.String(length=120), nullable=False),
        sa.Column("saved_at", crm_app.models.types.UTCDateTime(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["campaign_steps.id"],
            name=op.f("fk_campaign_step_versions_step_id_campaign_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_step_versions")),
        sa.UniqueConstraint(
            "step_id", "version", name=op.f("uq_campaign_step_versions_step_version")
        ),
    )
    op.create_table(
        "test_sends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("to_email", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("backend", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("sent_by", sa.String(length=120), nullable=False),
        sa.Column("sent_at", crm_app.models.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint("status IN ('sent', 'failed')", name=op.f("ck_test_sends_status")),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["campaign_steps.id"],
            name=op.f("fk_test_sends_step_id_campaign_steps"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_test_sends_contact_id_contacts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_sends")),
    )
    op.create_index("ix_test_sends_step_sent", "test_sends", ["step_id", "sent_at"])
    op.create_index("ix_test_sends_sent_at", "test_sends", ["sent_at"])


def _add_new_columns() -> None:
    """campaigns.reentry, enrollments.current_step_id and enrollments.entry."""
    if _sqlite():
        op.execute(
            "ALTER TABLE campaigns ADD COLUMN reentry VARCHAR(16) DEFAULT 'resume' NOT NULL"
            f" CONSTRAINT ck_campaigns_reentry CHECK ({REENTRY_CHECK})"
        )
        op.execute(
            "ALTER TABLE enrollments ADD COLUMN current_step_id INTEGER"
            f" CONSTRAINT {STEP_FK} REFERENCES campaign_steps (id)"
        )
        op.execute(
            "ALTER TABLE enrollments ADD COLUMN entry VARCHAR(16) DEFAULT 'first' NOT NULL"
            f" CONSTRAINT ck_enrollments_entry CHECK ({ENTRY_CHECK})"
        )
        return
    op.add_column(
        "campaigns",
        sa.Column("reentry", sa.String(length=16), server_default="resume", nullable=False),
    )
    op.create_check_constraint(op.f("ck_campaigns_reentry"), "campaigns", REENTRY_CHECK)
    op.add_column("enrollments", sa.Column("current_step_id", sa.Integer(), nullable=True))
    op.create_foreign_key(
        op.f(STEP_FK),
        "enrollments",
        "campaign_steps",
        ["current_step_id"],
        ["id"],
    )
    op.add_column(
        "enrollments",
        sa.Column("entry", sa.String(length=16), server_default="first", nullable=False),
    )
    op.create_check_constraint(op.f("ck_enrollments_entry"), "enrollments", ENTRY_CHECK)


def upgrade():
    _create_tables()
    _add_new_columns()

    # Data: the step at each enrolment's position (none past the last step: the tick
    # completes those), and the history starts with each email as it is now.
    op.execute(
        "UPDATE enrollments SET current_step_id = (SELECT s.id FROM campaign_steps s"
        " WHERE s.campaign_id = enrollments.campaign_id AND s.position = enrollments.current_step)"
    )
    op.execute(
        "INSERT INTO campaign_step_versions"
        " (step_id, version, subject, body_html, body_text, saved_by, saved_at, note)"
        " SELECT id, version, subject, body_html, body_text, 'system', updated_at,"
        " 'as it was when version history began' FROM campaign_steps"
    )

    op.create_index("ix_enrollments_current_step_id", "enrollments", ["current_step_id"])
    op.drop_column("enrollments", "current_step")
    op.drop_column("messages", "step_position")


def downgrade():
    # Positions back from the identities (an enrolment with no step: one past the last).
    op.add_column(
        "messages",
        sa.Column("step_position", sa.Integer(), server_default="0", nullable=False),
    )
    op.execute(
        "UPDATE messages SET step_position = COALESCE((SELECT s.position FROM campaign_steps s"
        " WHERE s.id = messages.step_id), 0)"
    )
    op.add_column(
        "enrollments",
        sa.Column("current_step", sa.Integer(), server_default="1", nullable=False),
    )
    op.execute(
        "UPDATE enrollments SET current_step = COALESCE("
        "(SELECT s.position FROM campaign_steps s WHERE s.id = enrollments.current_step_id),"
        " (SELECT COUNT(*) + 1 FROM campaign_steps s WHERE s.campaign_id = enrollments.campaign_id))"
    )
    op.drop_index("ix_enrollments_current_step_id", table_name="enrollments")
    if not _sqlite():  # SQLite drops a column's own constraints with the column
        op.drop_constraint(op.f("ck_enrollments_entry"), "enrollments", type_="check")
        op.drop_constraint(op.f(STEP_FK), "enrollments", type_="foreignkey")
        op.drop_constraint(op.f("ck_campaigns_reentry"), "campaigns", type_="check")
    op.drop_column("enrollments", "entry")
    op.drop_column("enrollments", "current_step_id")
    op.drop_column("campaigns", "reentry")

    op.drop_index("ix_test_sends_sent_at", table_name="test_sends")
    op.drop_index("ix_test_sends_step_sent", table_name="test_sends")
    op.drop_table("test_sends")
    op.drop_table("campaign_step_versions")
