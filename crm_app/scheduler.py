"""The scheduler process: RQ 3's own cron enqueues `crm_app.jobs.tick` every minute,
and the outbound webhook sweep and the Idempotency-Key clean-up.

Run it with `python -m crm_app.scheduler` (the run command starts one). It only
enqueues; a worker runs the tick inside the app context. Running two schedulers
is safe because the tick itself is idempotent, so production may run a spare.

Redis going away (a restart, a dropped connection), even while a tick is being
enqueued, never ends it: it waits with backoff and carries on; a job whose enqueue
failed is still due and goes at the next pass (`run_forever`).
"""

from __future__ import annotations

import logging
import sys
import time

import redis
from flask import Flask
from redis import Redis
from rq.cron import CronScheduler
from rq.exceptions import StopRequested

from crm_app import create_app
from crm_app.config import settings_of
from crm_app.drip.common.redis_outages import REDIS_ERRORS, RedisBackoff, redis_away
from crm_app.jobs import auto_promote_variants, purge_idempotency_keys, sweep_webhooks, tick

TICK_INTERVAL_SECONDS = 60
# A tick that has not started within a few minutes is stale: the next one replaces it.
TICK_TTL_SECONDS = 5 * 60
TICK_TIMEOUT_SECONDS = 10 * 60
# Outbound webhooks whose job or worker was lost are found within a minute of their lease.
WEBHOOK_SWEEP_INTERVAL_SECONDS = 60
IDEMPOTENCY_PURGE_INTERVAL_SECONDS = 3600
AUTO_PROMOTION_INTERVAL_SECONDS = 300


def build_scheduler(app: Flask, connection: Redis | None = None) -> CronScheduler:
    """A CronScheduler on the app's Redis with the tick registered on the app's queue."""
    if connection is None:
        if not settings_of(app).redis_url:
            raise RuntimeError(
                "REDIS_URL is not set: start the app with `make run` (embedded Redis) "
                "or point REDIS_URL at a Redis server."
            )
        connection = Redis.from_url(settings_of(app).redis_url)
    scheduler = CronScheduler(connection=connection)
    scheduler.register(
        tick,
        settings_of(app).rq_queue,
        interval=TICK_INTERVAL_SECONDS,
        ttl=TICK_TTL_SECONDS,
        job_timeout=TICK_TIMEOUT_SECONDS,
    )
    for job, interval in (
        (sweep_webhooks, WEBHOOK_SWEEP_INTERVAL_SECONDS),
        (purge_idempotency_keys, IDEMPOTENCY_PURGE_INTERVAL_SECONDS),
    ):
        scheduler.register(job, settings_of(app).rq_queue, interval=interval, ttl=interval)
    if settings_of(app).ab_auto_promote_after > 0:  # A/B auto-promotion: off by default
        interval = AUTO_PROMOTION_INTERVAL_SECONDS
        scheduler.register(
            auto_promote_variants, settings_of(app).rq_queue, interval=interval, ttl=interval
        )
    return scheduler


log = logging.getLogger("scheduler")


def run_forever(scheduler: CronScheduler, *, passes: int | None = None, sleep=time.sleep) -> None:
    """CronScheduler.start, riding out Redis: enqueue what is due, heartbeat, sleep;
    on a Redis error, wait (growing, capped) and go on, registering again (a restarted
    or flushed Redis forgot it). `passes` bounds the loop (tests)."""
    scheduler._install_signal_handlers()
    registered, backoff, done = False, RedisBackoff(), 0
    try:
        while passes is None or done < passes:
            done += 1
            try:
                if not registered:
                    scheduler.register_birth()
                    registered = True
                if scheduler.enqueue_jobs():
                    scheduler.save()
                scheduler.heartbeat()
            except redis.exceptions.RedisError as error:
                if not redis_away(error):
                    raise
                wait = backoff.next_wait()
                log.warning("Redis unreachable (%s); trying again in %.1f s", error, wait)
                registered = False
                sleep(wait)
                continue
            backoff.reset()
            pause = scheduler.calculate_sleep_interval()
            if pause > 0:
                sleep(pause)
    except (KeyboardInterrupt, StopRequested):
        log.info("stop requested")
    finally:
        try:
            scheduler.register_death()
        except REDIS_ERRORS:
            pass  # its registry entry expires by itself


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(message)s")
    try:
        scheduler = build_scheduler(create_app())
    except RuntimeError as exc:
        print(f"scheduler: {exc}", file=sys.stderr)
        return 2
    run_forever(scheduler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
