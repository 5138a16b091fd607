"""A request that only reads (GET, HEAD, OPTIONS) reads in a READ ONLY transaction on
PostgreSQL, ended with COMMIT.

Why COMMIT: psycopg prepares a statement on a connection once it ran there five times,
and PostgreSQL then parses it once, and plans it once unless that generic plan looks
costlier than planning for each run's values (plan_cache_mode "auto"; a search's
pattern is in the SQL itself, contact_search.contains). psycopg forgets every prepared
statement at a ROLLBACK, and every request ended with one (the session's close), so
none ever stayed prepared. A read-only transaction commits exactly what a rollback
keeps: nothing. At 100,000 contacts (bench/pages_bench.py, in-process, three
alternations) the database's CPU per request fell from 1.67-2.07 to 0.70-0.80 ms on a
contact's page (five statements), 1.50-1.53 to 1.00-1.40 ms on the dashboard and
1.10-1.17 to 0.77-0.93 ms on the contact list.

Why READ ONLY: so that committing can never keep a write, and so that the database
itself refuses one made in answer to a GET (state changes are CSRF-checked POSTs).
A view that changed objects without writing them (none should) is rolled back instead.
The few reads that write on purpose say so: a view with `@writes_when_read` (a download
that puts itself in the audit log first), and the API, whose every call may note when
its token was last used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import event, exc

from crm_app.extensions import db

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Blueprints whose reads may write: the API notes a token's last use (api/auth.py).
WRITING_BLUEPRINTS = frozenset({"api"})
log = logging.getLogger(__name__)

View = TypeVar("View", bound=Callable)


def writes_when_read(view: View) -> View:
    """Marks a view that writes in answer to a GET: it reads in an ordinary transaction."""
    view.writes_when_read = True  # type: ignore[attr-defined]
    return view


def init_read_only_requests(app: Flask) -> None:
    """On PostgreSQL only: SQLite has no read-only transaction, and Python's sqlite3
    keeps its compiled statements across a rollback."""
    with app.app_context():
        engine = db.engine
    if engine.dialect.name != "postgresql":
        return
    # Set on every checkout, for whatever uses the connection next: a read, or not (a
    # write, a job). A request that never reads the database checks nothing out.
    event.listen(engine, "checkout", _read_only_if_the_request_only_reads)
    app.teardown_request(_end_read_only)


def _read_only_if_the_request_only_reads(dbapi_connection, record, proxy) -> None:
    read_only = True if _request_only_reads() else None  # None: psycopg's plain BEGIN
    if dbapi_connection.read_only is not read_only:
        dbapi_connection.read_only = read_only


def _request_only_reads() -> bool:
    if not has_request_context() or request.method not in SAFE_METHODS:
        return False
    if "request_only_reads" not in g:
        view = current_app.view_functions.get(request.endpoint or "")
        g.request_only_reads = not (
            request.blueprint in WRITING_BLUEPRINTS or getattr(view, "writes_when_read", False)
        )
    return g.request_only_reads


def _end_read_only(error: BaseException | None) -> None:
    if error is not None or not db.session.registry.has() or not _request_only_reads():
        return
    session = db.session()  # the request's own Session (not the scoped proxy)
    if not session.in_transaction() or session.new or session.dirty or session.deleted:
        return  # nothing read; or the session's close rolls back, as for any other request
    # A streamed answer (a CSV) still reads the objects its view loaded, after this.
    session.expire_on_commit = False
    try:
        session.commit()
    except exc.SQLAlchemyError:
        # A statement failed and the view went on (the transaction must roll back).
        log.debug("read-only request: rolled back instead of committed", exc_info=True)
        session.rollback()
    finally:
        session.expire_on_commit = True
