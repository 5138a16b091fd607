"""flask health and GET /health: green only when the system can actually send."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
import sqlalchemy as sa
from rq import Queue, Worker

from crm_app.drip.common.heartbeats import beat, forget
from crm_app.drip.delivery.heartbeat import LAST_TICK_KEY
from crm_app.drip.delivery.provider_health import set_backend_auth_failure
from crm_app.models import SystemState, utcnow
from tests.delivery_helpers import wait_for


@pytest.fixture
def live_worker(app):
    """A worker's heartbeat, as worker.py refreshes it."""
    connection = redis.Redis.from_url(app.config["REDIS_URL"])
    beat(connection, app.config["RQ_QUEUE"], "worker-1")
    yield "worker-1"
    forget(connection, app.config["RQ_QUEUE"], "worker-1")


HEALTH_TOKEN = "monitor-token-for-tests"


@pytest.fixture(autouse=True)
def health_token(app, monkeypatch):
    monkeypatch.setitem(app.config, "HEALTH_TOKEN", HEALTH_TOKEN)


def get_health(web, token=HEALTH_TOKEN, **kw):
    """GET /health as a monitor that holds the token (it sees every check)."""
    return web.get("/health", headers={"Authorization": f"Bearer {token}"}, **kw)


def tick_at(session, moment):
    session.merge(SystemState(key=LAST_TICK_KEY, value=moment.isoformat(), updated_at=moment))
    session.commit()


def checks(response):
    return {name: c["ok"] for name, c in response.get_json()["checks"].items()}


def test_all_green(web, session, live_worker):
    tick_at(session, utcnow())
    response = get_health(web)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "ok"
    assert set(checks(response)) == {
        "database",
        "migrations",
        "tables",
        "scheduler",
        "sendgrid_auth",
        "erasure_key",
        "redis",
        "worker",
    }
    assert body["figures"]["failed"] == 0 and body["figures"]["in_doubt"] == 0


def test_no_worker_is_red(web, session):
    tick_at(session, utcnow())
    response = get_health(web)
    assert response.status_code == 503
    assert checks(response)["worker"] is False


def test_a_worker_in_rqs_registry_but_without_a_heartbeat_is_not_live(app, web, session):
    connection = redis.Redis.from_url(app.config["REDIS_URL"])
    queue = Queue(app.config["RQ_QUEUE"], connection=connection)
    gone = Worker([queue], connection=connection)
    gone.register_birth()  # registered at its start, then killed: no heartbeat since
    try:
        tick_at(session, utcnow())
        assert checks(get_health(web))["worker"] is False
    finally:
        gone.register_death()


def test_a_heartbeat_after_a_flushall_makes_the_worker_live_again(app, web, session, live_worker):
    connection = redis.Redis.from_url(app.config["REDIS_URL"])
    tick_at(session, utcnow())
    connection.flushdb()
    assert checks(get_health(web))["worker"] is False
    beat(connection, app.config["RQ_QUEUE"], live_worker)  # its next beat
    assert checks(get_health(web))["worker"] is True


def test_a_worker_whose_beat_is_older_than_the_ttl_is_dead_and_forgotten(app, monkeypatch):
    """The beats are one sorted set per queue: a worker killed without a word is dropped
    once its last beat is TTL_SECONDS old; one that stops says so at once."""
    from crm_app.drip.common import heartbeats

    connection = redis.Redis.from_url(app.config["REDIS_URL"])
    queue_name = app.config["RQ_QUEUE"]
    start = 1_800_000_000.0
    monkeypatch.setattr(heartbeats.time, "time", lambda: start)
    beat(connection, queue_name, "killed")
    beat(connection, queue_name, "stopping")
    monkeypatch.setattr(heartbeats.time, "time", lambda: start + heartbeats.TTL_SECONDS - 1)
    beat(connection, queue_name, "alive")
    forget(connection, queue_name, "stopping")
    assert heartbeats.live_workers(connection, queue_name) == ["alive", "killed"]
    monkeypatch.setattr(heartbeats.time, "time", lambda: start + heartbeats.TTL_SECONDS + 1)
    assert heartbeats.live_workers(connection, queue_name) == ["alive"]
    assert connection.zcard(heartbeats.alive_key(queue_name)) == 1  # the dead one is gone
    assert 0 < connection.ttl(heartbeats.alive_key(queue_name)) <= heartbeats.TTL_SECONDS


def test_the_worker_beats_on_after_an_error_that_is_not_redis_going_away(app, monkeypatch):
    """A connection cut mid-reply may raise more than ConnectionError: the worker's
    heartbeat thread logs it and beats again, where it used to end and leave a running
    worker reported dead."""
    import worker
    from crm_app.drip.common import heartbeats

    real_beat, calls = heartbeats.beat, []

    def beat_failing_once(*args) -> None:
        calls.append(args)
        if len(calls) == 1:
            raise ValueError("a reply cut in the middle")
        real_beat(*args)

    monkeypatch.setattr(heartbeats, "beat", beat_failing_once)
    monkeypatch.setattr(heartbeats, "BEAT_SECONDS", 0.01)
    connection = redis.Redis.from_url(app.config["REDIS_URL"])
    queue_name = app.config["RQ_QUEUE"]
    thread = worker.Heartbeat(connection, queue_name, "unlucky")
    thread.start()
    try:
        assert wait_for(lambda: heartbeats.live_workers(connection, queue_name) == ["unlucky"])
        assert thread.is_alive() and len(calls) >= 2
    finally:
        thread.stop()
        thread.join(5)


def test_stale_scheduler_is_red(web, session, live_worker):
    tick_at(session, utcnow() - timedelta(minutes=3))
    response = get_health(web)
    assert response.status_code == 503
    assert checks(response)["scheduler"] is False


def test_schema_behind_the_latest_migration_is_red(web, session, live_worker):
    tick_at(session, utcnow())
    head = session.scalar(sa.text("SELECT version_num FROM alembic_version"))
    session.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    session.commit()
    try:
        response = get_health(web)
        assert response.status_code == 503
        detail = response.get_json()["checks"]["migrations"]["detail"]
        assert "flask db upgrade" in detail
    finally:
        session.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": head})
        session.commit()


def test_sendgrid_401_turns_health_red(web, session, live_worker):
    tick_at(session, utcnow())
    set_backend_auth_failure(session, "401: The provided authorization grant is invalid", utcnow())
    session.commit()
    response = get_health(web)
    assert response.status_code == 503
    assert "authorization grant" in response.get_json()["checks"]["sendgrid_auth"]["detail"]


def test_unreachable_redis_is_red(web, session, app, monkeypatch):
    tick_at(session, utcnow())
    monkeypatch.setitem(app.config, "REDIS_URL", "redis://127.0.0.1:1/0")
    response = get_health(web)
    assert response.status_code == 503
    assert checks(response)["redis"] is False


def test_cli_prints_each_check_and_exits_1_when_red(runner, session):
    result = runner.invoke(args=["health"])
    assert result.exit_code == 1
    assert "FAIL scheduler" in result.output
    assert "ok   database" in result.output


def test_cli_exits_0_when_green(runner, session, live_worker):
    tick_at(session, utcnow())
    result = runner.invoke(args=["health"])
    assert result.exit_code == 0, result.output


# --- who sees what ---------------------------------------------------------------------


def test_anyone_else_sees_only_the_status(web, session, live_worker):
    tick_at(session, utcnow())
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic x"}):
        response = web.get("/health", headers=headers)
        assert response.status_code == 200
        assert response.get_json() == {"status": "ok"}


def test_a_failing_status_is_told_to_anyone_but_not_why(web, session):
    response = web.get("/health")
    assert response.status_code == 503
    assert response.get_json() == {"status": "failing"}


def test_a_logged_in_user_sees_the_checks(staff, session):
    body = staff.get("/health").get_json()
    assert {"checks", "figures"} <= set(body)


def test_a_caller_from_a_configured_network_sees_the_checks(web, app, session, monkeypatch):
    monkeypatch.setitem(app.config, "HEALTH_NETWORKS", "10.0.0.0/8, not-a-network")
    inside = web.get("/health", environ_base={"REMOTE_ADDR": "10.1.2.3"}).get_json()
    assert "checks" in inside
    outside = web.get("/health", environ_base={"REMOTE_ADDR": "192.0.2.1"}).get_json()
    assert outside == {"status": "failing"}


def test_a_database_never_migrated_is_red_not_a_crash(app, tmp_path):
    """A fresh instance (or an upgrade not yet migrated) lacks the tables the other checks
    read: health says to run flask db upgrade, instead of an error 500 and a traceback."""
    from sqlalchemy.orm import Session

    from crm_app.drip.reporting.health import check_health
    from crm_app.extensions import db

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with Session(engine) as empty:
            report = check_health(
                empty, db.metadata, redis_url=app.config["REDIS_URL"], queue_name="drip"
            )
    finally:
        engine.dispose()
    body = report.as_dict()
    assert body["status"] == "failing"
    assert body["checks"]["database"]["ok"] is True
    assert "flask db upgrade" in body["checks"]["migrations"]["detail"]
    assert body["checks"]["tables"]["ok"] is False
