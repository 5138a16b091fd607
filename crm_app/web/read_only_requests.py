"""A request that only reads (GET, HEAD, OPTIONS) reads on PostgreSQL with each
statement in a READ ONLY transaction of its own: the connection is in autocommit with
`default_transaction_read_only` on, so the database itself refuses a write made in
answer to a GET (state changes are CSRF-checked POSTs), and a read costs no BEGIN and
no COMMIT. Those were two of a page's four round trips: at 100,000 contacts
(in-process, medians of six alternations) the route that only checks the login went
from 1.58 to 1.29 ms of the app's CPU and 0.28 to 0.18 ms of the database's, the
contact list from 3.69 to 3.39 and 1.01 to 0.95; under gunicorn (bench/pages_bench.py,
alternated twice) that route from 1,072-1,142 to 1,194-1,223 requests/s. PostgreSQL's
default isolation (READ COMMITTED) took a snapshot per statement within a transaction
too, so a read sees nothing it would not have seen before. On SQLite (`make run`'s
default) a read's connection is `query_only`: the same refusal of a write, nothing else.
A read through a server-side cursor (a streamed CSV, `yield_per`) needs a transaction:
it opens one, READ ONLY too, ended with COMMIT at the end of the request.
The few reads that write on purpose say so: a view with `@writes_when_read` (a download
that puts itself in the audit log first), and the API, whose every call may note when
its token was last used. They, POSTs and jobs run in READ WRITE transactions.

Why a read never rolls back (autocommit has nothing to roll back, and a streamed read
commits): psycopg prepares a statement once it ran five times on a connection, and
forgets every prepared statement at a ROLLBACK. PostgreSQL then plans a prepared
statement once (a generic plan) unless that plan looks costlier than planning for each
run's values. A generic plan treats every bound value as unknown, constants included
(a status, a date range): the year's campaign overview took 171 ms instead of 59 with
one made for 30 days (bench/analytics_bench.py), and a count of rare "failed" messages
may read them all where it knows the value. So a read (the API's and the export's
too) prepares nothing (psycopg's prepare_threshold None) unless its view says, with
`@reuses_plans`, that every statement it runs is keyed by ids, not by values whose
frequency varies. POSTs and jobs prepare as psycopg does by default, as they always
did. A contact's page, so marked, at 100,000 contacts (bench/pages_bench.py,
alternated three times): the database's CPU 1.17-1.90 -> 0.57-0.60 ms a page, the page
260-320 -> 346-397 requests/s; its five statements had the same plans generic as for
the values, for each of 50 contacts. The contact list is not marked: of its 322 statements
(every order, direction, type filter, page and kind of search), EXPLAIN with
plan_cache_mode force_generic_plan gave 153 plans that PostgreSQL would prefer and that
differ from the plan for the values, among them a type filter walking the newest
contacts' index (every row for a rare type) and a two-letter search doing the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import psycopg
from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import event, exc

from crm_app.extensions import db

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Blueprints whose reads may write: the API notes a token's last use (api/auth.py).
WRITING_BLUEPRINTS = frozenset({"api"})
# psycopg's default: a statement run this many times on a connection is prepared.
PREPARE_AFTER_RUNS = 5
# Whether a pooled connection reads in READ ONLY transactions unless told otherwise.
_READ_ONLY_BY_DEFAULT = "drip_read_only_by_default"
# Whether a pooled SQLite connection refuses writes (PRAGMA query_only) at the moment.
_QUERY_ONLY = "drip_query_only"
log = logging.getLogger(__name__)

View = TypeVar("View", bound=Callable)


def writes_when_read(view: View) -> View:
    """Marks a view that writes in answer to a GET: it reads in an ordinary transaction."""
    view.writes_when_read = True  # type: ignore[attr-defined]
    return view


def reuses_plans(view: View) -> View:
    """Marks a read whose statements PostgreSQL may plan once and run again: only a view
    whose every statement is keyed by ids (a contact's page), never by a status, a date
    range, a type or a pattern, whose frequency changes which plan is right."""
    view.reuses_plans = True  # type: ignore[attr-defined]
    return view


def init_read_only_requests(app: Flask) -> None:
    """On PostgreSQL, read-only transactions in autocommit and prepared statements as
    above. On SQLite (`make run`'s default) only the refusal: a read's connection is
    `query_only`. Python's sqlite3 keeps its compiled statements across a rollback, and
    SQLite has no BEGIN of its own for a read to save."""
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        event.listen(engine, "checkout", _set_query_only_for_the_request)
        return
    if engine.dialect.name != "postgresql":
        return
    # Set on every checkout, for whatever uses the connection next: a read, or not (a
    # write, a job). A request that never reads the database checks nothing out.
    event.listen(engine, "checkout", _set_up_for_the_request)
    event.listen(engine, "before_cursor_execute", _open_a_transaction_to_stream)
    app.teardown_request(_end_read_only)


def _set_up_for_the_request(dbapi_connection, record, proxy) -> None:
    reads = _request_only_reads()
    if reads and not record.info.get(_READ_ONLY_BY_DEFAULT):
        _make_reads_read_only_by_default(dbapi_connection)
        record.info[_READ_ONLY_BY_DEFAULT] = True
    if dbapi_connection.autocommit is not reads:
        dbapi_connection.autocommit = reads
    # A read's transaction (to stream) is READ ONLY; any other says READ WRITE, since
    # the connection may have read before and be read-only by default.
    if dbapi_connection.read_only is not reads:
        dbapi_connection.read_only = reads
    threshold = None if _is_a_read() and not _view_says("reuses_plans") else PREPARE_AFTER_RUNS
    if dbapi_connection.prepare_threshold != threshold:
        dbapi_connection.prepare_threshold = threshold


def _set_query_only_for_the_request(dbapi_connection, record, proxy) -> None:
    """SQLite refuses every write on a read's connection ("attempt to write a readonly
    database"), as PostgreSQL's read-only transactions do: a view that wrote in answer
    to a GET or a HEAD (a HEAD once ran a delete form's POST branch) fails loudly
    instead of writing without a CSRF check."""
    reads = _request_only_reads()
    if record.info.get(_QUERY_ONLY) is not reads:
        dbapi_connection.execute(f"PRAGMA query_only = {int(reads)}")
        record.info[_QUERY_ONLY] = reads


def _make_reads_read_only_by_default(dbapi_connection) -> None:
    """Once per connection: a statement run in autocommit is then READ ONLY."""
    dbapi_connection.autocommit = True  # outside a transaction, which a rollback would undo
    try:
        dbapi_connection.execute("SET default_transaction_read_only = on")
    except psycopg.OperationalError as error:
        # Gone while it sat in the pool: the pool opens another instead.
        raise exc.DisconnectionError() from error


def _open_a_transaction_to_stream(conn, cursor, statement, parameters, context, many) -> None:
    """A server-side cursor (DECLARE) lives only in a transaction: a read that streams
    leaves autocommit before it, and its transaction (READ ONLY) ends with the request."""
    if isinstance(cursor, psycopg.ServerCursor):
        dbapi_connection = conn.connection.dbapi_connection
        if dbapi_connection.autocommit:
            dbapi_connection.autocommit = False


def _is_a_read() -> bool:
    """A GET, HEAD or OPTIONS request, whether or not it writes on purpose."""
    return has_request_context() and request.method in SAFE_METHODS


def _request_only_reads() -> bool:
    if not _is_a_read():
        return False
    if "request_only_reads" not in g:
        g.request_only_reads = not (
            request.blueprint in WRITING_BLUEPRINTS or _view_says("writes_when_read")
        )
    return g.request_only_reads


def _view_says(mark: str) -> bool:
    """Whether the request's view carries `mark` (set by the decorators above)."""
    view = current_app.view_functions.get(request.endpoint or "")
    return getattr(view, mark, False)


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
