"""Requests that only read do it in a READ ONLY transaction on PostgreSQL, ended with
COMMIT; only views marked @reuses_plans let psycopg prepare their statements
(crm_app/web/read_only_requests.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import exc

from crm_app import create_app
from crm_app.extensions import db
from crm_app.models import User
from crm_app.web.read_only_requests import reuses_plans, writes_when_read

WRITE = sa.text("UPDATE users SET name = name")
PREPARED_HERE = sa.text("SELECT count(*) FROM pg_prepared_statements")


@pytest.fixture
def probe(app):
    """An app of its own (routes cannot be added to the suite's once it served), on
    the suite's database, with routes that try to write."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("read-only transactions are PostgreSQL's")
    probe_app = create_app(
        {
            "TESTING": True,
            "WTF_CSRF_ENABLED": False,
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "REDIS_URL": app.config["REDIS_URL"],
            "SECRET_KEY": "test-secret-key",
            "RATELIMIT_ENABLED": False,
        }
    )

    def try_to_write() -> str:
        try:
            db.session.execute(WRITE)
            db.session.commit()
            return "written"
        except exc.DBAPIError as error:
            db.session.rollback()
            return type(error.orig).__name__

    probe_app.add_url_rule("/probe/write", "write", try_to_write, methods=["GET", "POST"])
    probe_app.add_url_rule(
        "/probe/write-on-purpose", "write_on_purpose", writes_when_read(lambda: try_to_write())
    )

    def prepared_here() -> str:
        return str(db.session.scalar(PREPARED_HERE))

    def prepare_threshold() -> str:
        return str(db.session.connection().connection.dbapi_connection.prepare_threshold)

    def rename() -> str:
        db.session.scalars(sa.select(User)).first().name = "Renamed"
        return "changed, not saved"

    probe_app.add_url_rule("/probe/prepared", "prepared", prepared_here)
    probe_app.add_url_rule(
        "/probe/prepared-reused", "reused", reuses_plans(lambda: prepared_here())
    )
    probe_app.add_url_rule(
        "/probe/threshold", "threshold", prepare_threshold, methods=["GET", "POST"]
    )
    probe_app.add_url_rule(
        "/probe/threshold-reused", "threshold_reused", reuses_plans(lambda: prepare_threshold())
    )
    probe_app.add_url_rule(
        "/probe/threshold-writing",
        "threshold_writing",
        writes_when_read(lambda: prepare_threshold()),
    )
    probe_app.add_url_rule("/probe/rename", "rename", rename)

    yield probe_app.test_client()
    with probe_app.app_context():
        db.engine.dispose()


def test_the_database_refuses_a_write_in_answer_to_a_get(probe, admin_user):
    assert probe.get("/probe/write").get_data(as_text=True) == "ReadOnlySqlTransaction"
    assert probe.head("/probe/write").status_code == 200


def test_a_post_after_a_get_writes_on_the_same_connection(probe, admin_user):
    # Whether a connection reads only is set again at every checkout.
    probe.get("/probe/write")
    assert probe.post("/probe/write").get_data(as_text=True) == "written"
    assert probe.get("/probe/write").get_data(as_text=True) == "ReadOnlySqlTransaction"


def test_a_view_that_writes_on_purpose_when_read_says_so(probe, admin_user):
    assert probe.get("/probe/write-on-purpose").get_data(as_text=True) == "written"


def test_a_view_that_reuses_plans_keeps_its_statements_prepared_from_one_read_to_the_next(probe):
    """psycopg prepares a statement run five times on a connection, and forgets them
    all at a rollback: reads that ended with one never kept any."""
    counts = [int(probe.get("/probe/prepared-reused").get_data(as_text=True)) for _ in range(8)]
    assert counts[:5] == [0] * 5 and counts[-1] >= 1, counts


def test_other_reads_prepare_nothing_and_writes_prepare_as_psycopg_does(probe):
    # A generic plan guesses every bound value (a status, a date range): only views
    # whose statements are keyed by ids may have one.
    counts = [int(probe.get("/probe/prepared").get_data(as_text=True)) for _ in range(8)]
    assert counts == [0] * 8
    assert probe.get("/probe/threshold").get_data(as_text=True) == "None"
    assert probe.get("/probe/threshold-reused").get_data(as_text=True) == "5"
    assert probe.get("/probe/threshold-writing").get_data(as_text=True) == "None"
    assert probe.post("/probe/threshold").get_data(as_text=True) == "5"
    assert probe.get("/probe/threshold").get_data(as_text=True) == "None"


def test_a_read_that_changed_objects_without_saving_them_keeps_nothing(probe, admin_user):
    # Committing would write the change (and fail: the transaction is read-only).
    assert probe.get("/probe/rename").status_code == 200
    db.session.expire_all()
    assert db.session.scalar(sa.select(User.name)) != "Renamed"


def test_the_contact_page_reuses_its_plans():
    from crm_app.web import contacts

    assert getattr(contacts.detail, "reuses_plans", False)
