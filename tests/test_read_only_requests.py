"""Requests that only read do it in a READ ONLY transaction on PostgreSQL
(crm_app/web/read_only_requests.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import exc

from crm_app import create_app
from crm_app.extensions import db
from crm_app.web.read_only_requests import writes_when_read

WRITE = sa.text("UPDATE users SET name = name")


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
