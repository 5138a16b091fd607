"""Requests that only read do it on PostgreSQL with each statement in a READ ONLY
transaction of its own (no BEGIN, no COMMIT), or in one READ ONLY transaction when they
stream through a server-side cursor; only views marked @reuses_plans let psycopg
prepare their statements (crm_app/web/read_only_requests.py)."""

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


def _probe_app(app):
    return create_app(
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


@pytest.fixture
def write_probe(app):
    """On either database: an app of its own with a route that tries to write."""
    probe_app = _probe_app(app)
    probe_app.add_url_rule("/probe/write", "write", try_to_write, methods=["GET", "POST"])
    probe_app.add_url_rule(
        "/probe/write-on-purpose", "write_on_purpose", writes_when_read(lambda: try_to_write())
    )
    yield probe_app.test_client()
    with probe_app.app_context():
        db.engine.dispose()


# What each database raises for a write on a read's connection.
REFUSED = {"postgresql": "ReadOnlySqlTransaction", "sqlite": "OperationalError"}


def test_either_database_refuses_a_write_in_answer_to_a_get_or_a_head(write_probe, admin_user):
    refused = REFUSED[db.engine.dialect.name]
    assert write_probe.get("/probe/write").get_data(as_text=True) == refused
    assert write_probe.head("/probe/write").status_code == 200
    # Set again at every checkout: a POST on the same pooled connection writes.
    assert write_probe.post("/probe/write").get_data(as_text=True) == "written"
    assert write_probe.get("/probe/write").get_data(as_text=True) == refused
    assert write_probe.get("/probe/write-on-purpose").get_data(as_text=True) == "written"


@pytest.fixture
def probe(app):
    """An app of its own (routes cannot be added to the suite's once it served), on
    the suite's database, with routes that try to write."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("read-only transactions are PostgreSQL's")
    probe_app = _probe_app(app)

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

    def statements_share_a_transaction() -> str:
        db.session.execute(sa.text("SELECT pg_sleep(0.002)"))
        same = db.session.scalar(sa.text("SELECT transaction_timestamp() < statement_timestamp()"))
        return "one transaction" if same else "one each"

    def stream_then_write() -> str:
        streamed = db.session.execute(sa.select(User.id).execution_options(yield_per=10)).all()
        return f"{len(streamed)} streamed, " + try_to_write()

    def backend() -> str:
        return str(db.session.scalar(sa.text("SELECT pg_backend_pid()")))

    for path, view in (
        ("/probe/transactions", statements_share_a_transaction),
        ("/probe/stream-then-write", stream_then_write),
        ("/probe/backend", backend),
    ):
        probe_app.add_url_rule(path, path, view, methods=["GET", "POST"])

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


def test_a_read_runs_each_statement_alone_and_a_write_in_one_transaction(probe, admin_user):
    # No BEGIN and no COMMIT for a read: two round trips of a page's four.
    assert probe.get("/probe/transactions").get_data(as_text=True) == "one each"
    assert probe.post("/probe/transactions").get_data(as_text=True) == "one transaction"
    assert probe.get("/probe/transactions").get_data(as_text=True) == "one each"


def test_a_read_that_streams_has_a_transaction_and_it_is_read_only(probe, admin_user):
    # DECLARE (a server-side cursor) needs a transaction: the read opens one, READ ONLY.
    answer = probe.get("/probe/stream-then-write").get_data(as_text=True)
    assert answer == "1 streamed, ReadOnlySqlTransaction"
    assert probe.post("/probe/stream-then-write").get_data(as_text=True) == "1 streamed, written"
    assert probe.get("/probe/transactions").get_data(as_text=True) == "one each"


def test_a_connection_lost_before_its_first_read_is_replaced(probe, admin_user):
    """Made read-only by default at its first read (one SET): a connection that went
    away in the pool fails that SET, and the pool opens another instead."""
    lost = probe.post("/probe/backend").get_data(as_text=True)  # a write: no SET yet
    db.session.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": int(lost)})
    db.session.commit()
    answer = probe.get("/probe/backend")
    assert answer.status_code == 200 and answer.get_data(as_text=True) != lost
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
