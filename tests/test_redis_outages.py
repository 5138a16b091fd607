"""Workers and the scheduler ride out Redis: a real redis-server of the test's own is
stopped and started again while a job is finishing and while the scheduler enqueues;
nothing exits, and the worker delivers afterwards."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import pytest
import redis as redis_lib
from rq import Queue, Worker
from rq.cron import CronJob, CronScheduler

from crm_app.drip.common.heartbeats import live_workers
from crm_app.drip.delivery.pacing import Pacer
from crm_app.drip.delivery.tick import run_tick
from crm_app.embedded_redis import redis_server_binary
from crm_app.models import utcnow
from crm_app.scheduler import build_scheduler, run_forever
from tests.delivery_helpers import (
    bulk_due,
    kill_worker,
    open_all_week,
    start_worker,
    statuses,
    wait_for,
    worker_env,
)

pytestmark = pytest.mark.slow
pytest_plugins = ["tests.conftest_delivery"]


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A redis-server on a port of its own, without persistence: a restart loses all."""

    def __init__(self, tmp_path):
        self.port = _unused_port()
        self.dir = tmp_path
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        connection = redis_lib.Redis.from_url(self.url)
        assert wait_for(lambda: _answers(connection), timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()  # as when its machine dies: no goodbye to clients
            self.process.wait(10)
            self.process = None


def _statuses(session) -> dict[str, int]:
    session.rollback()
    session.expire_all()
    return statuses(session)


def _output(worker: subprocess.Popen) -> str:
    """What the worker logged, for a failed assertion's message (it is killed first)."""
    kill_worker(worker)
    return worker.stdout.read().decode(errors="replace")[-4000:]


def _answers(connection) -> bool:
    try:
        return bool(connection.ping())
    except redis_lib.exceptions.ConnectionError:
        return False


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sendgrid_app(app, fake_sendgrid, monkeypatch):
    monkeypatch.setitem(app.config, "SENDGRID_API_KEY", "SG.test-key")
    monkeypatch.setitem(app.config, "SENDGRID_API_HOST", fake_sendgrid.url)
    app.extensions.pop("drip_backend", None)
    yield app
    app.extensions.pop("drip_backend", None)


def _due(session, campaigns, count: int) -> list[int]:
    campaign = campaigns["client"]
    open_all_week(campaign)
    session.commit()
    return bulk_due(session, campaign, count, utcnow() - timedelta(minutes=1))


def _enqueue(queue: Queue, ids: list[int]) -> None:
    queue.enqueue("crm_app.jobs.deliver_messages", ids, job_timeout=120)


@dataclass
class LiveWorker:
    due: list[int]  # message ids the tick created, not enqueued yet
    connection: redis_lib.Redis
    queue: Queue
    process: subprocess.Popen


@contextmanager
def _live_worker(name: str, due: int, session, app, campaigns, fake_sendgrid, database_url,
                 own_redis, tmp_path) -> Iterator[LiveWorker]:  # fmt: skip
    """`due` emails ready to enqueue, and a worker on the test's Redis, seen live; it is
    killed at the end."""
    _due(session, campaigns, due)
    tick = run_tick(session, lambda ids: None, now=utcnow())
    connection = redis_lib.Redis.from_url(own_redis.url)
    queue = Queue(app.config["RQ_QUEUE"], connection=connection)
    env = worker_env(app, database_url, own_redis.url, fake_sendgrid, tmp_path)
    process = start_worker(env, "--name", name)
    try:
        assert wait_for(lambda: live_workers(connection, queue.name) == [name], timeout=30)
        yield LiveWorker(tick.enqueued, connection, queue, process)
    finally:
        kill_worker(process)


def test_a_worker_rides_out_a_redis_restart_while_a_job_finishes_then_delivers(
    session, sendgrid_app, campaigns, fake_sendgrid, database_url, own_redis, tmp_path
):
    fake_sendgrid.delay = 1.5  # Redis dies while these answers are awaited
    with _live_worker("rider", 10, session, sendgrid_app, campaigns, fake_sendgrid,
                      database_url, own_redis, tmp_path) as live:  # fmt: skip
        _enqueue(live.queue, live.due[:5])
        assert wait_for(lambda: fake_sendgrid.in_flight >= 1, timeout=30)
        own_redis.stop()  # the job finishes without Redis: RQ's bookkeeping fails
        assert wait_for(lambda: _statuses(session).get("sent") == 5, timeout=30)
        time.sleep(1.0)
        assert live.process.poll() is None, live.process.stdout.read1().decode()
        own_redis.start()
        fake_sendgrid.delay = 0

        # Back: it beats again, registers in RQ again, and delivers new work.
        names = lambda: live_workers(live.connection, live.queue.name)  # noqa: E731
        assert wait_for(lambda: names() == ["rider"], timeout=30), _output(live.process)
        _enqueue(live.queue, live.due[5:])
        assert wait_for(lambda: _statuses(session) == {"sent": 10}, timeout=60)
        assert live.process.poll() is None
        # In RQ's registry again too (the dashboard's list), after its next heartbeat.
        registered = lambda: [w.name for w in Worker.all(queue=live.queue)]  # noqa: E731
        assert wait_for(lambda: "rider" in registered(), timeout=40)
    assert fake_sendgrid.duplicates() == {} and len(fake_sendgrid.deliveries) == 10


def test_a_worker_idle_through_a_restart_and_a_flushall_is_live_and_registered_again(
    session, sendgrid_app, campaigns, fake_sendgrid, database_url, own_redis, tmp_path
):
    with _live_worker("idler", 3, session, sendgrid_app, campaigns, fake_sendgrid,
                      database_url, own_redis, tmp_path) as live:  # fmt: skip
        own_redis.stop()
        time.sleep(2.0)
        own_redis.start()
        live.connection.flushall()
        names = lambda: live_workers(live.connection, live.queue.name)  # noqa: E731
        assert wait_for(lambda: names() == ["idler"], timeout=30), _output(live.process)
        _enqueue(live.queue, live.due)
        assert wait_for(lambda: _statuses(session) == {"sent": 3}, timeout=60)
        assert live.process.poll() is None


def test_a_worker_started_while_redis_is_down_waits_for_it_then_delivers(
    session, sendgrid_app, campaigns, fake_sendgrid, database_url, own_redis, tmp_path
):
    """Building RQ's worker names its Redis connection: with Redis away (at start, or
    back from a restart with a pooled connection it reset) that raised outside the
    loop's guard, and the worker exited (seen once in the restart test above)."""
    _due(session, campaigns, 2)
    tick = run_tick(session, lambda ids: None, now=utcnow())
    connection = redis_lib.Redis.from_url(own_redis.url)
    queue = Queue(sendgrid_app.config["RQ_QUEUE"], connection=connection)
    env = worker_env(sendgrid_app, database_url, own_redis.url, fake_sendgrid, tmp_path)
    own_redis.stop()
    process = start_worker(env, "--name", "early")
    try:
        time.sleep(3.0)
        assert process.poll() is None, _output(process)
        own_redis.start()
        names = lambda: live_workers(connection, queue.name)  # noqa: E731
        assert wait_for(lambda: names() == ["early"], timeout=30), _output(process)
        _enqueue(queue, tick.enqueued)
        assert wait_for(lambda: _statuses(session) == {"sent": 2}, timeout=60)
        assert process.poll() is None
    finally:
        kill_worker(process)


def test_an_idle_worker_waits_on_the_queue_quietly_and_takes_new_work_at_once(
    session, sendgrid_app, campaigns, fake_sendgrid, database_url, own_redis, tmp_path
):
    """RQ blocks on the queue for 20 s between heartbeats; redis-py's default socket
    timeout (5 s) cut each wait short, RQ logged "could not connect to Redis" and slept
    1, 2, 4 ... 60 s before listening again, while new jobs waited."""
    with _live_worker("waiter", 2, session, sendgrid_app, campaigns, fake_sendgrid,
                      database_url, own_redis, tmp_path) as live:  # fmt: skip
        time.sleep(7.0)  # idle past redis-py's default socket timeout
        _enqueue(live.queue, live.due)
        assert wait_for(lambda: _statuses(session) == {"sent": 2}, timeout=3)
    output = live.process.stdout.read().decode()
    assert "could not connect to Redis" not in output, output


def test_the_scheduler_rides_out_redis_dying_while_it_enqueues_the_tick(
    app, own_redis, monkeypatch
):
    connection = redis_lib.Redis.from_url(own_redis.url)
    scheduler = build_scheduler(app, connection)
    queue = Queue(app.config["RQ_QUEUE"], connection=connection)
    original = CronJob.enqueue
    calls = {"n": 0}

    def enqueue_while_redis_dies(self, conn):
        calls["n"] += 1
        if calls["n"] == 1:
            own_redis.stop()  # the server goes away in the middle of the enqueue
        return original(self, conn)

    monkeypatch.setattr(CronJob, "enqueue", enqueue_while_redis_dies)
    waits: list[float] = []

    registered: list[str] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            own_redis.start()  # back after two failed passes
        elif len(waits) == 3:  # the pass after: done, and registered on the new server
            registered.extend(s.name for s in CronScheduler.all(connection))

    run_forever(scheduler, passes=4, sleep=sleep)

    assert waits[:2] == [0.5, 1.0]  # it waited, growing, and never raised
    jobs = [job.func_name for job in queue.get_jobs()]
    assert jobs == ["crm_app.jobs.tick", "crm_app.jobs.sweep_webhooks",
                    "crm_app.jobs.purge_idempotency_keys"]  # fmt: skip
    assert registered == [scheduler.name]


def _fail_over_to_a_replica(connection: redis_lib.Redis) -> None:
    """As during a failover: the server answers, serves what it has, and refuses every
    write (READONLY) while it follows a master that is not there."""
    connection.replicaof("127.0.0.1", _unused_port())


def test_a_worker_waits_through_a_failover_until_its_redis_takes_writes(
    session, sendgrid_app, campaigns, fake_sendgrid, database_url, own_redis, tmp_path
):
    with _live_worker("promoted", 3, session, sendgrid_app, campaigns, fake_sendgrid,
                      database_url, own_redis, tmp_path) as live:  # fmt: skip
        _fail_over_to_a_replica(live.connection)
        time.sleep(6.0)  # its wait on the queue and its beats are refused meanwhile
        assert live.process.poll() is None, _output(live.process)
        live.connection.replicaof("NO", "ONE")  # promoted: takes writes again
        _enqueue(live.queue, live.due)
        assert wait_for(lambda: _statuses(session) == {"sent": 3}, timeout=60)
        assert live.process.poll() is None


def test_the_scheduler_waits_through_a_failover_until_its_redis_takes_writes(app, own_redis):
    connection = redis_lib.Redis.from_url(own_redis.url)
    scheduler = build_scheduler(app, connection)
    queue = Queue(app.config["RQ_QUEUE"], connection=connection)
    _fail_over_to_a_replica(connection)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            connection.replicaof("NO", "ONE")

    run_forever(scheduler, passes=4, sleep=sleep)

    assert waits[:2] == [0.5, 1.0]  # refused twice, waited, and never raised
    assert "crm_app.jobs.tick" in [job.func_name for job in queue.get_jobs()]


def test_the_send_pace_waits_through_a_failover_rather_than_failing_the_job(own_redis):
    """Its scripts' writes are refused on a replica (a ResponseError naming READONLY):
    no token and a wait, as when Redis is unreachable, where the job used to fail."""
    connection = redis_lib.Redis.from_url(own_redis.url)
    pacer = Pacer(connection, 20)
    _fail_over_to_a_replica(connection)
    grant = pacer.take(5)
    assert (grant.granted, grant.wait_seconds) == (0, 0.5)
    pacer.slow_down(None)  # a 429 meanwhile: noted in the log, not raised
    connection.replicaof("NO", "ONE")
    assert pacer.take(1).granted == 1  # promoted: tokens again


def test_health_says_redis_takes_no_writes_during_a_failover(app, session, own_redis):
    """A replica answers PING: /health reported it reachable, then failed with a 500 on
    its first write (dropping old heartbeats). Now it is red, and says why."""
    from crm_app.drip.reporting.health import check_health
    from crm_app.extensions import db

    connection = redis_lib.Redis.from_url(own_redis.url)
    _fail_over_to_a_replica(connection)

    def redis_check() -> dict:
        report = check_health(
            session, db.metadata, redis_url=own_redis.url, queue_name=app.config["RQ_QUEUE"]
        )
        return report.as_dict()["checks"]["redis"]

    assert redis_check() == {"ok": False, "detail": "takes no writes (a replica: a failover?)"}
    connection.replicaof("NO", "ONE")
    assert redis_check() == {"ok": True, "detail": "reachable"}


def test_a_wait_on_the_queue_cut_short_by_a_failover_is_redis_going_away():
    from crm_app.drip.common.redis_outages import redis_away

    unblocked = "UNBLOCKED force unblock from blocking operation, instance state changed"
    assert redis_away(redis_lib.exceptions.ResponseError(unblocked))
    assert not redis_away(redis_lib.exceptions.ResponseError("WRONGTYPE Operation against"))
