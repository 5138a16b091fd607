"""SQL's lower() agrees with Python's str.lower on every database: the app lower-cases
searches and addresses in Python and compares them with lower(...) in SQL."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa
from alembic import command
from flask_migrate import upgrade

from crm_app import create_app
from crm_app.drip.audience.contact_list import contact_list_page
from crm_app.drip.audience.contacts import ContactInput, ContactValidationError, create_contact
from crm_app.drip.audience.list_request import ListRequest
from crm_app.drip.audience.suppression import suppress
from crm_app.extensions import db
from crm_app.models import Contact


def _listed(session, query: str) -> dict[str, str | None]:
    page = contact_list_page(session, ListRequest(query=query), per_page=25)
    return {row.full_name: row.not_mailed for row in page.rows}


@pytest.mark.parametrize("query", ["élodie", "Élodie", "ÉLODIE", "él", "durand"])
def test_a_search_finds_a_name_with_an_accented_capital(session, make_contact, query):
    make_contact(first_name="Élodie", last_name="Durand", email="elodie@example.com")
    make_contact(first_name="Emile", last_name="Zola", email="emile@example.com")

    assert set(_listed(session, query)) == {"Élodie Durand"}


def test_an_address_differing_by_the_case_of_an_accented_letter_is_refused(session, make_contact):
    make_contact(email="Émile@example.com")

    with pytest.raises(ContactValidationError) as refused:
        create_contact(
            session, ContactInput(email="émile@example.com", contact_type="lead"), actor="test"
        )
    assert refused.value.errors["email"] == "Another contact already has this email address."
    # The schema refuses it too, whoever writes the row.
    session.rollback()
    session.add(Contact(email="éMILE@example.com", contact_type="lead"))
    with pytest.raises(sa.exc.IntegrityError):
        session.flush()
    session.rollback()


def test_suppressing_an_upper_case_accented_address_marks_its_contact(session, make_contact):
    contact = make_contact(first_name="Émile", last_name="Zola", email="Émile@example.com")

    result = suppress(session, "ÉMILE@example.com", reason="manual", source="test", actor="test")
    session.commit()

    assert result.stopped == 1  # its lead campaign
    assert session.get(Contact, contact.id).email_status == "unsubscribed"
    assert _listed(session, "zola") == {"Émile Zola": "suppressed by staff"}


@pytest.fixture
def sqlite_at_0021(tmp_path):
    """A SQLite database at 0021 whose contacts were written by SQLite's own lower()."""
    path = tmp_path / "old.db"
    app = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "REDIS_URL": None}
    )
    with app.app_context():
        upgrade(revision="0021")
        db.engine.dispose()
    yield app, path
    with app.app_context():
        db.engine.dispose()


def _write_with_the_builtin_lower(path, *emails: str) -> None:
    old = sqlite3.connect(path)
    with old:
        old.executemany(
            "INSERT INTO contacts (first_name, last_name, email, phone, company, title,"
            " industry, contact_type, timezone, notes, custom_fields, email_status,"
            " created_at, updated_at) VALUES ('Élodie', 'Durand', ?, '', 'Équipe', '', '',"
            " 'lead', 'UTC', '', '{}', 'ok', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
            [(email,) for email in emails],
        )
    old.close()


def test_0022_refiles_the_lower_indexes_of_an_existing_sqlite_database(sqlite_at_0021):
    app, path = sqlite_at_0021
    _write_with_the_builtin_lower(path, "Élodie@example.com")

    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            # Read through the unique index, which the old lower() filed under "Élodie@".
            found = conn.execute(
                sa.text("SELECT email FROM contacts WHERE lower(email) = 'élodie@example.com'")
            ).all()
            assert found == [("Élodie@example.com",)]
            assert conn.execute(sa.text("PRAGMA integrity_check")).scalar() == "ok"
            assert conn.execute(
                sa.text("SELECT search_text LIKE '%élodie durand%équipe%' FROM contacts")
            ).scalar()


def test_0022_names_the_addresses_two_contacts_share_and_stops(sqlite_at_0021):
    app, path = sqlite_at_0021
    _write_with_the_builtin_lower(path, "Émile@example.com", "émile@example.com")

    with app.app_context():
        config = app.extensions["migrate"].migrate.get_config()
        # Alembic's own command: Flask-Migrate's logs the error and exits.
        with pytest.raises(RuntimeError, match=r"émile@example.com \(2 contacts\)\. Merge"):
            command.upgrade(config, "head")
