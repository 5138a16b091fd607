"""One migration history that builds, tears down and rebuilds the schema, and matches the models.

The suite's own database is built by `upgrade()` in conftest, so the constraint
tests below check what the migrations created, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import re
import warnings

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import current_app
from flask_migrate import downgrade, upgrade

from crm_app import create_app
from crm_app.extensions import db
from crm_app.models import Activity, Campaign, CampaignStep, Contact, Enrollment, Message
from crm_app.models.tracking import EmailEvent
from crm_app.models.types import compared_on, tables_on
from tests.panel_helpers import sent_email
from tests.scratch_db import scratch_database


def _app_tables(engine: sa.Engine) -> set[str]:
    return {table.name for table in tables_on(db.metadata, engine.dialect.name)}


def _head_revision() -> str:
    config = current_app.extensions["migrate"].migrate.get_config()
    (head,) = ScriptDirectory.from_config(config).get_heads()
    return head


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


@pytest.fixture
def scratch_database_url(tmp_path):
    """A database of its own, so going down to base does not touch the suite's."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    with scratch_database(base, prefix="drip_scratch") as url:
        yield url


# SQLite's batch mode reflects the table and cannot reflect the expression index: expected.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_migrations_upgrade_from_empty_downgrade_to_base_and_upgrade_again(
    scratch_database_url,
):
    scratch = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": scratch_database_url, "REDIS_URL": None}
    )
    with scratch.app_context():
        assert _tables(db.engine) == set()

        upgrade()
        assert _tables(db.engine) == _app_tables(db.engine)

        downgrade(revision="base")
        assert _tables(db.engine) == set()

        upgrade()
        assert _tables(db.engine) == _app_tables(db.engine)
        with db.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == _head_revision()
        db.engine.dispose()


def test_suite_database_is_at_the_single_head(app):
    with db.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == _head_revision()


def test_models_and_migrations_agree(app):
    with db.engine.connect() as conn, warnings.catch_warnings():
        # SQLite cannot reflect expression indexes; the tests below cover that one.
        warnings.filterwarnings("ignore", message=".*expression-based index")
        context = MigrationContext.configure(
            conn,
            opts={"compare_type": True, "include_object": compared_on(conn.dialect.name)},
        )
        diff = compare_metadata(context, db.metadata)

    assert diff == [], f"models and migrations differ; write a migration for: {diff}"


def _contact(email: str) -> Contact:
    return Contact(email=email, contact_type="lead", first_name="Ada")


def test_contact_email_is_unique_regardless_of_case(session):
    session.add(_contact("A@x.com"))
    session.commit()

    session.add(_contact("a@x.com"))
    with pytest.raises(sa.exc.IntegrityError):
        session.flush()
    session.rollback()


def _index_definition(name: str) -> str:
    """CREATE INDEX as the migrated database keeps it."""
    if db.engine.dialect.name == "postgresql":
        query = "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
    else:
        query = "SELECT sql FROM sqlite_master WHERE name = :name"
    with db.engine.connect() as conn:
        return conn.execute(sa.text(query), {"name": name}).scalar_one()


def test_case_insensitive_email_index_exists_in_the_schema(app):
    definition = _index_definition("uq_contacts_email_lower")

    # PostgreSQL spells it lower((email)::text), SQLite as written in the migration.
    normalized = re.sub(r"::text|[()\s]", "", definition.lower())
    assert normalized.startswith("createuniqueindex") and "loweremail" in normalized


def test_the_due_and_ended_at_indexes_leave_out_their_nulls(app):
    """0016: an enrolment whose email is on the way (next_send_at NULL) has no entry in
    ix_enrollments_due, an active one (ended_at NULL) none in ix_enrollments_ended_at:
    the tick's UPDATE writes neither (test_tick checks the due query still reads it)."""
    assert "next_send_at is not null" in _index_definition("ix_enrollments_due").lower()
    assert "ended_at is not null" in _index_definition("ix_enrollments_ended_at").lower()


def test_the_due_index_carries_the_campaign_on_postgresql(app):
    """0023: the dashboard counts what is due in active campaigns from the index alone
    (with each row's campaign read from the table, the count took six times as long)."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("INCLUDE is PostgreSQL's")
    assert "INCLUDE (campaign_id)" in _index_definition("ix_enrollments_due")


def test_postgresql_samples_search_text_finely(session):
    """0019: 401 histogram bounds for search_text, so the planner's guess of how many
    contacts a search matches, and search_trigrams' sample, stay close."""
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite keeps no histograms")
    target = session.scalar(
        sa.text(
            "SELECT attstattarget FROM pg_attribute"
            " WHERE attrelid = 'contacts'::regclass AND attname = 'search_text'"
        )
    )
    assert target == 400


def _enrollment(contact: Contact, campaign_id: int, status: str) -> Enrollment:
    return Enrollment(contact_id=contact.id, campaign_id=campaign_id, status=status)


def test_a_stopped_and_an_active_enrollment_in_one_campaign_may_coexist(session, campaigns):
    contact = _contact("ada@example.com")
    session.add(contact)
    session.flush()
    lead = campaigns["lead"].id

    session.add_all(
        [
            _enrollment(contact, lead, "stopped"),
            _enrollment(contact, lead, "completed"),
            _enrollment(contact, lead, "stopped"),
            _enrollment(contact, lead, "active"),
        ]
    )
    session.commit()

    assert len(contact.enrollments) == 4


def test_two_active_enrollments_in_one_campaign_are_refused_by_the_schema(session, campaigns):
    contact = _contact("ada@example.com")
    session.add(contact)
    session.flush()
    session.add(_enrollment(contact, campaigns["lead"].id, "active"))
    session.commit()

    session.add(_enrollment(contact, campaigns["lead"].id, "active"))
    with pytest.raises(sa.exc.IntegrityError):
        session.flush()
    session.rollback()


@pytest.mark.parametrize("deleted", ["contact", "campaign", "enrollment"])
def test_deleting_a_contact_a_campaign_or_an_enrolment_in_sql_deletes_its_messages(
    session, make_contact, deleted
):
    """On PostgreSQL a message has no foreign key of its own to its contact or campaign
    (0015), nor to its enrolment (0020): the enrolment's statement trigger takes its
    messages, whichever of the three goes (SQLite: the keys' cascades)."""
    contact, other = make_contact("lead"), make_contact("prospect")
    gone, stays = sent_email(session, contact).id, sent_email(session, other).id
    enrollment = contact.enrollments[0]
    enrollment_id, campaign_id = enrollment.id, enrollment.campaign_id
    table, row_id = {
        "contact": (Contact, contact.id),
        "campaign": (Campaign, campaign_id),
        "enrollment": (Enrollment, enrollment_id),
    }[deleted]

    session.execute(sa.delete(table).where(table.id == row_id))
    session.commit()

    left = set(session.scalars(sa.select(Message.id)))
    assert gone not in left and stays in left
    assert session.scalar(sa.select(Enrollment.id).where(Enrollment.id == enrollment_id)) is None


def test_a_deleted_step_leaves_its_messages_tied_to_no_step(session, make_contact):
    """ON DELETE SET NULL for messages.step_id: SQLite's foreign key, PostgreSQL's
    statement trigger on campaign_steps (0020). What was sent stays."""
    contact = make_contact("lead")
    first, second = sent_email(session, contact), sent_email(session, contact, step=2)
    first_id, second_id, kept_step = first.id, second.id, first.step_id
    # Off the step first: an enrolment's own key to its step refuses the delete.
    moved = sa.update(Enrollment).where(Enrollment.contact_id == contact.id)
    session.execute(moved.values(current_step_id=kept_step))
    session.execute(sa.delete(CampaignStep).where(CampaignStep.id == second.step_id))
    session.commit()

    steps = dict(session.execute(sa.select(Message.id, Message.step_id)).all())
    assert steps == {first_id: kept_step, second_id: None}


@pytest.mark.parametrize("deleted", ["contact", "campaign", "message"])
def test_a_deleted_message_leaves_its_events_tied_to_no_message(session, make_contact, deleted):
    """ON DELETE SET NULL for email_events.message_id: SQLite's foreign key, PostgreSQL's
    statement trigger on messages (0017), through a cascade or a DELETE of the message."""
    contact, other = make_contact("lead"), make_contact("prospect")
    gone, stays = sent_email(session, contact), sent_email(session, other)
    for n, message in enumerate((gone, stays, gone)):
        session.add(EmailEvent(sg_event_id=f"ev{n}", event="open", message_id=message.id))
    session.commit()
    gone_id, stays_id, campaign_id = gone.id, stays.id, gone.campaign_id
    table, row_id = {
        "contact": (Contact, contact.id),
        "campaign": (Campaign, campaign_id),
        "message": (Message, gone_id),
    }[deleted]

    session.execute(sa.delete(table).where(table.id == row_id))
    session.commit()

    tied = dict(session.execute(sa.select(EmailEvent.sg_event_id, EmailEvent.message_id)).all())
    assert tied == {"ev0": None, "ev1": stays_id, "ev2": None}
    assert session.get(Message, gone_id) is None


@pytest.mark.parametrize("deleted", ["contact", "campaign", "enrollment"])
def test_a_deleted_contact_takes_its_timeline_and_a_deleted_campaign_or_enrolment_lets_go(
    session, make_contact, deleted
):
    """What activities' keys do on a delete: SQLite's foreign keys, PostgreSQL's statement
    triggers on contacts, campaigns and enrollments (0018)."""
    contact, other = make_contact("lead"), make_contact("prospect")
    rows = {}
    for owner in (contact, other):
        enrollment = owner.enrollments[0]
        row = Activity(
            contact_id=owner.id,
            kind="note",
            campaign_id=enrollment.campaign_id,
            enrollment_id=enrollment.id,
        )
        session.add(row)
        session.flush()
        rows[owner.id] = (row.id, owner.id, enrollment.campaign_id, enrollment.id)
    session.commit()
    mine, theirs = rows[contact.id], rows[other.id]
    table, row_id = {
        "contact": (Contact, contact.id),
        "campaign": (Campaign, mine[2]),
        "enrollment": (Enrollment, mine[3]),
    }[deleted]

    session.execute(sa.delete(table).where(table.id == row_id))
    session.commit()

    columns = (Activity.id, Activity.contact_id, Activity.campaign_id, Activity.enrollment_id)
    ours = sa.select(*columns).where(Activity.id.in_([mine[0], theirs[0]]))
    left = {row[0]: tuple(row) for row in session.execute(ours)}
    expected = {
        "contact": {},
        "campaign": {mine[0]: (mine[0], mine[1], None, None)},  # its enrolment went too
        "enrollment": {mine[0]: (mine[0], mine[1], mine[2], None)},
    }[deleted]
    assert left == {**expected, theirs[0]: theirs}


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_0007_moves_enrolments_from_a_position_to_the_step_and_keeps_every_row(
    scratch_database_url,
):
    """Enrolments at a position point at that step afterwards (none past the last), each
    email's text becomes its version 1, and no message or event is lost on the way
    (SQLite included: no table is rebuilt under the foreign keys)."""
    scratch = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": scratch_database_url, "REDIS_URL": None}
    )
    with scratch.app_context():
        upgrade(revision="0003")
        with db.engine.begin() as conn:
            _seed_0003_rows(conn)
        upgrade()
        with db.engine.connect() as conn:
            steps = dict(conn.execute(sa.text("SELECT position, id FROM campaign_steps")).all())
            at = dict(
                conn.execute(sa.text("SELECT contact_id, current_step_id FROM enrollments")).all()
            )
            assert at == {1: steps[1], 2: steps[3], 3: None}
            versions = conn.execute(
                sa.text("SELECT step_id, version, subject FROM campaign_step_versions")
            ).all()
            assert sorted(versions) == sorted((steps[p], 2, f"Email {p}") for p in (1, 2, 3))
            assert conn.execute(sa.text("SELECT COUNT(*) FROM messages")).scalar() == 1
            assert conn.execute(sa.text("SELECT message_id FROM email_events")).scalar() == 1
        downgrade(revision="0003")
        with db.engine.connect() as conn:
            back = dict(
                conn.execute(sa.text("SELECT contact_id, current_step FROM enrollments")).all()
            )
            assert back == {1: 1, 2: 3, 3: 4}
            assert conn.execute(sa.text("SELECT step_position FROM messages")).scalar() == 1
        db.engine.dispose()


def _seed_0003_rows(conn) -> None:
    now = "2026-11-25 10:00:00"
    conn.execute(
        sa.text(
            "INSERT INTO campaigns (id, slug, name, description, status, send_days, send_start,"
            " send_end, goal_contact_type, goal_days, customized, created_at, updated_at)"
            " VALUES (1, 'c', 'C', '', 'active', '0,1,2,3,4', '09:00:00', '17:00:00', '', 60,"
            f" false, '{now}', '{now}')"
        )
    )
    for position in (1, 2, 3):
        conn.execute(
            sa.text(
                "INSERT INTO campaign_steps (id, campaign_id, position, delay_days, subject,"
                " body_html, body_text, version, updated_at) VALUES"
                f" ({position * 10}, 1, {position}, 1, 'Email {position}', 'h', 't', 2, '{now}')"
            )
        )
    for contact, position in ((1, 1), (2, 3), (3, 4)):  # 4: past the last step
        conn.execute(
            sa.text(
                "INSERT INTO contacts (id, first_name, last_name, email, phone, company, title,"
                " industry, contact_type, timezone, notes, custom_fields, email_status,"
                f" created_at, updated_at) VALUES ({contact}, '', '', 'c{contact}@example.com',"
                f" '', '', '', '', 'lead', 'UTC', '', '{{}}', 'ok', '{now}', '{now}')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO enrollments (id, contact_id, campaign_id, status, current_step,"
                " source, enrolled_by, enrolled_at, end_reason) VALUES"
                f" ({contact}, {contact}, 1, 'active', {position}, 'test', 'test', '{now}', '')"
            )
        )
    conn.execute(
        sa.text(
            "INSERT INTO messages (id, enrollment_id, step_id, contact_id, campaign_id,"
            " step_position, status, attempts, to_email, subject, html, text, headers, error,"
            f" created_at) VALUES (1, 1, 10, 1, 1, 1, 'sent', 1, 'c1@example.com', 's', 'h',"
            f" 't', '{{}}', '', '{now}')"
        )
    )
    conn.execute(
        sa.text(
            "INSERT INTO email_events (sg_event_id, event, email, message_id, received_at,"
            f" outcome, detail, payload) VALUES ('e1', 'open', 'c1@example.com', 1, '{now}',"
            " 'applied', '', '{}')"
        )
    )
