"""Pooled PostgreSQL connections: checked before use only once they sat idle, and one
the server dropped meanwhile is replaced before anything uses it."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from crm_app.db_pool import ping_after_idle
from crm_app.extensions import db


@pytest.fixture
def postgres_url(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the pool is checked on PostgreSQL (SQLite opens a file)")
    return database_url


def _engine(url: str, idle_seconds: float) -> sa.Engine:
    engine = sa.create_engine(url, pool_size=1, max_overflow=0)
    ping_after_idle(engine, idle_seconds)
    return engine


def _backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(sa.text("SELECT pg_backend_pid()"))


def test_a_connection_the_server_dropped_while_idle_is_replaced_before_use(postgres_url):
    engine = _engine(postgres_url, idle_seconds=0.05)
    dropped = _backend_pid(engine)
    killer = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with killer.connect() as connection:
        assert connection.scalar(sa.select(sa.func.pg_terminate_backend(dropped)))
    time.sleep(0.1)
    assert _backend_pid(engine) != dropped  # no error: a new connection served it
    engine.dispose()
    killer.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged_again(postgres_url, monkeypatch):
    pings: list[int] = []
    busy = _engine(postgres_url, idle_seconds=60)
    idle = _engine(postgres_url, idle_seconds=0.05)
    for engine in (busy, idle):
        real_ping = engine.dialect.do_ping
        monkeypatch.setattr(
            engine.dialect, "do_ping", lambda c, ping=real_ping: pings.append(1) or ping(c)
        )
    for _ in range(3):
        _backend_pid(busy)
    assert pings == []
    _backend_pid(idle)
    time.sleep(0.1)
    _backend_pid(idle)
    assert pings == [1]
    busy.dispose()
    idle.dispose()


def test_the_app_checks_its_idle_connections_instead_of_every_checkout(app, postgres_url):
    assert "pool_pre_ping" not in app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert db.engine.pool.dispatch.checkout  # ping_after_idle's listener
