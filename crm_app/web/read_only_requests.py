"""A request that only reads (GET, HEAD, OPTIONS) reads in a READ ONLY transaction on
PostgreSQL: the database itself refuses a write made in answer to a GET (state changes
are CSRF-checked POSTs). The few reads that write on purpose say so: a view with
`@writes_when_read` (a download that puts itself in the audit log first), and the API,
whose every call may note when its token was last used.

Measured and left alone: ending these transactions with COMMIT (which keeps nothing a
rollback would not) lets psycopg keep the statements it prepares after five runs on a
connection; it forgets them all at a ROLLBACK, which ends every request. PostgreSQL's
generic plans for them took more than half the database's time off a contact's page
(1.67-2.07 -> 0.70-0.80 ms at 100,000 contacts), but they treat every bound value,
constants included, as unknown: the year's campaign overview took 171 ms instead of 59
after the 30-day page had run, and 80 ms with its dates written into the SQL
(bench/analytics_bench.py). Planning every run instead (plan_cache_mode
force_custom_plan) kept no gain worth measuring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import event

from crm_app.extensions import db

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Blueprints whose reads may write: the API notes a token's last use (api/auth.py).
WRITING_BLUEPRINTS = frozenset({"api"})

View = TypeVar("View", bound=Callable)


def writes_when_read(view: View) -> View:
    """Marks a view that writes in answer to a GET: it reads in an ordinary transaction."""
    view.writes_when_read = True  # type: ignore[attr-defined]
    return view


def init_read_only_requests(app: Flask) -> None:
    """On PostgreSQL only (SQLite has no read-only transaction)."""
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "postgresql":
        # Set on every checkout, for whatever uses the connection next: a read, or not
        # (a write, a job). A request that never reads the database checks nothing out.
        event.listen(engine, "checkout", _read_only_if_the_request_only_reads)


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
