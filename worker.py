"""Start an RQ worker for Drip CRM: `python worker.py [--burst]`.

The app is created once per process and its context stays pushed, so jobs
reuse its database pool, Redis connection and SendGrid client. The worker
runs jobs in-process (no fork per job: a fork costs more than a job) and
clears the database session after every job so a broken one never leaks
into the next. It also runs RQ's scheduler, which moves delayed retries
(`enqueue_at`) onto the queue when they are due. A delivery job keeps up to
DELIVERY_CONCURRENCY requests in flight (see crm_app/drip/delivery/DELIVERY.md).

Redis going away (a restart, a dropped connection, a failover to a replica that
takes no writes yet) at any moment, idle, mid-job or while RQ finishes a job, never
ends the process: RQ's work loop gives up, this one waits with backoff until Redis
takes writes again and starts it again under the same name. A
thread refreshes the worker's heartbeat key (what /health counts), and the
worker registers itself again when a FLUSHALL emptied RQ's registry.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
import uuid

import redis
from rq.worker import SimpleWorker

from crm_app import create_app
from crm_app.config import settings_of
from crm_app.drip.common import heartbeats
from crm_app.drip.common.redis_outages import (
    REDIS_ERRORS,
    RedisBackoff,
    check_writable,
    redis_away,
)
from crm_app.extensions import db
from crm_app.gc_tuning import freeze_startup_objects
from crm_app.queue import get_queue, use_blocking_redis

log = logging.getLogger("worker")

# RQ blocks on the queue for worker_ttl - 15 s between heartbeats: 35 s keeps its
# registry (and our re-registration after a FLUSHALL) within 20 s.
WORKER_TTL_SECONDS = 35
# RQ's own rule for a connection of a worker with this ttl (Worker.connection_timeout):
# longer than the wait on the queue, so that the wait ends by itself, not by a timeout.
SOCKET_TIMEOUT_SECONDS = (WORKER_TTL_SECONDS - 15) + 10


class AppWorker(SimpleWorker):
    """SimpleWorker that hands every job a clean database session, knows when it was
    asked to stop, and registers again when its registry entry vanished."""

    stop_asked = False

    def perform_job(self, job, queue, execution):  # type: ignore[override]
        try:
            return super().perform_job(job, queue, execution)
        finally:
            db.session.remove()

    def request_stop(self, signum, frame):  # type: ignore[override]
        self.stop_asked = True
        try:
            super().request_stop(signum, frame)
        except REDIS_ERRORS:
            # RQ reads the worker's state from Redis first; Redis is away: stop now.
            from rq.exceptions import StopRequested

            raise StopRequested() from None

    def register_birth(self) -> None:
        # Our own earlier life under this name (RQ's loop gave up when Redis went away,
        # so it never registered its death): replace it.
        if self.connection.exists(self.key) and not self.connection.hexists(self.key, "death"):
            self.connection.delete(self.key)
        super().register_birth()

    def heartbeat(self, timeout=None, pipeline=None):  # type: ignore[override]
        if pipeline is None and not self.connection.hexists(self.key, "birth"):
            # A FLUSHALL (or a Redis restart without persistence) emptied the registry.
            log.warning("worker %s: not in RQ's registry any more, registering again", self.name)
            self.register_birth()
            self.set_state(self.get_state())
        return super().heartbeat(timeout, pipeline)


class Heartbeat(threading.Thread):
    """Refreshes this worker's heartbeat every few seconds, Redis willing."""

    def __init__(self, connection: redis.Redis, queue_name: str, worker_name: str):
        super().__init__(name="drip-heartbeat", daemon=True)
        self.connection, self.queue_name, self.worker_name = connection, queue_name, worker_name
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                heartbeats.beat(self.connection, self.queue_name, self.worker_name)
            except REDIS_ERRORS:
                pass  # the main loop reports the outage; the next beat tries again
            except Exception:
                # Anything else a connection cut mid-reply may raise: were this thread
                # to end, /health would call a running worker dead until its restart.
                log.exception("worker %s: a heartbeat failed; beating on", self.worker_name)
            self.stopped.wait(heartbeats.BEAT_SECONDS)

    def stop(self) -> None:
        self.stopped.set()
        try:
            heartbeats.forget(self.connection, self.queue_name, self.worker_name)
        except REDIS_ERRORS:
            pass  # it expires by itself


def wait_for_redis(connection: redis.Redis, stopping: threading.Event) -> bool:
    """Until Redis takes writes again (True) or a stop is asked (False), with growing
    waits."""
    backoff = RedisBackoff()
    while not stopping.is_set():
        try:
            check_writable(connection)
            return True
        except REDIS_ERRORS as error:
            wait = backoff.next_wait()
            log.warning("Redis unreachable (%s); trying again in %.1f s", error, wait)
        stopping.wait(wait)
    return False


def _queue_empty(queue) -> bool:
    try:
        return queue.count == 0
    except REDIS_ERRORS:
        return False


def run(app, *, burst: bool, name: str | None, with_scheduler: bool) -> None:
    """RQ's work loop, started again after every Redis outage, until a stop is asked
    (or, with burst, until the queue is empty)."""
    connection = use_blocking_redis(app, SOCKET_TIMEOUT_SECONDS)
    queue = get_queue(app)
    name = name or uuid.uuid4().hex
    stopping = threading.Event()
    heartbeat = Heartbeat(connection, settings_of(app).rq_queue, name)
    heartbeat.start()
    try:
        while not stopping.is_set():
            worker = None
            try:
                # Inside the try: building the worker talks to Redis (RQ names the
                # connection), which may be away at start, or just back with a pooled
                # connection the restart reset.
                worker = AppWorker(
                    [queue], connection=connection, name=name, worker_ttl=WORKER_TTL_SECONDS
                )
                worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="WARNING")
            except redis.exceptions.RedisError as error:
                if not redis_away(error):
                    raise
                log.warning("worker %s: Redis went away (%s)", name, error)
            if worker is not None and worker.stop_asked:
                break
            # RQ's loop installs its signal handlers; between two loops, ours.
            signal.signal(signal.SIGTERM, lambda *_: stopping.set())
            signal.signal(signal.SIGINT, lambda *_: stopping.set())
            if not wait_for_redis(connection, stopping):
                break
            if burst and _queue_empty(queue):
                break
            time.sleep(0.1)
    finally:
        heartbeat.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    parser.add_argument("--name", default=None, help="worker name (default: a random one)")
    parser.add_argument("--no-scheduler", action="store_true", help="do not run RQ's scheduler")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = create_app()
    app.app_context().push()
    freeze_startup_objects()
    run(app, burst=args.burst, name=args.name, with_scheduler=not args.no_scheduler)


if __name__ == "__main__":
    main()
