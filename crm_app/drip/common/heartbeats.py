"""Liveness of the worker processes: the time of each one's last beat, in Redis.

RQ's own worker registry is written when a worker starts: after a FLUSHALL or a
Redis restart without persistence it is empty while every worker runs. A beat that
each worker writes every few seconds (a dead worker's grows old and is dropped) is
what /health counts instead.
"""

from __future__ import annotations

import time

import redis

PREFIX = "drip:alive"
# A worker refreshes its beat every BEAT_SECONDS; missing for TTL_SECONDS, it is dead.
BEAT_SECONDS = 5.0
TTL_SECONDS = 30


def alive_key(queue_name: str) -> str:
    """One sorted set per queue: worker name -> time of its last beat. /health reads it
    whole (a few members), never a SCAN of a keyspace that holds every RQ job."""
    return f"{PREFIX}:{queue_name}"


def beat(connection: redis.Redis, queue_name: str, worker_name: str) -> None:
    """This worker is alive (raises redis errors: the caller retries at its next beat)."""
    key = alive_key(queue_name)
    with connection.pipeline() as pipe:
        pipe.zadd(key, {worker_name: time.time()})
        pipe.expire(key, TTL_SECONDS)  # every worker gone: the set goes too
        pipe.execute()


def forget(connection: redis.Redis, queue_name: str, worker_name: str) -> None:
    """This worker stops (the others stay listed)."""
    connection.zrem(alive_key(queue_name), worker_name)


def live_workers(connection: redis.Redis, queue_name: str) -> list[str]:
    """Names of the workers of `queue_name` that beat within TTL_SECONDS (the dead ones
    are dropped from the set on the way)."""
    key, since = alive_key(queue_name), time.time() - TTL_SECONDS
    connection.zremrangebyscore(key, "-inf", f"({since}")
    return sorted(name.decode() for name in connection.zrangebyscore(key, since, "+inf"))
