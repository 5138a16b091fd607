"""Pooled PostgreSQL connections are checked before use only once they have sat idle.

SQLAlchemy's pool_pre_ping checks every connection at every checkout: one more round
trip on each page and each job (0.26 ms of the app's CPU per request, measured), to
catch a server restart or a connection dropped while it sat in the pool. A connection
checked in a moment ago was working a moment ago; only one idle for longer than
DB_PING_AFTER_IDLE_SECONDS is pinged, and a dead one is replaced before anything uses
it. A server that went away within that window fails the one statement that finds
out, and SQLAlchemy then replaces every connection of the pool.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy import event, exc

# When the connection last was known to work: opened or checked in.
_LAST_GOOD = "drip_last_good"


def ping_after_idle(engine: sa.Engine, idle_seconds: float) -> None:
    """Check a connection at checkout when it has been idle longer than `idle_seconds`."""

    def remember(dbapi_connection, record, *_) -> None:
        record.info[_LAST_GOOD] = time.monotonic()

    def ping_if_idle(dbapi_connection, record, proxy) -> None:
        if time.monotonic() - record.info.get(_LAST_GOOD, 0.0) <= idle_seconds:
            return
        dialect = engine.dialect
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                # The pool opens a new connection instead, and drops the others of
                # its age: they went down with the same server.
                raise exc.InvalidatePoolError() from error
            raise

    event.listen(engine, "connect", remember)
    event.listen(engine, "checkin", remember)
    event.listen(engine, "checkout", ping_if_idle)
