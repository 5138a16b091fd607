"""Liveness of the worker processes, as keys each one refreshes in Redis with a TTL.

RQ's own worker registry is written when a worker starts: after a FLUSHALL or a
Redis restart without persistence it is empty while every worker runs. A key that
each worker rewrites every few seconds (and that expires on its own when the worker
dies) is what /health counts instead.
"""

from __future__ import annotations

import time

import redis

PREFIX = "drip:alive"
# A worker refreshes its key every BEAT_SECONDS; missing for TTL_SECONDS, it is dead.
BEAT_SECONDS = 5.0
TTL_SECONDS = 30


def worker_key(queue_name: str, worker_name: str) -> str:
    return f"{PREFIX}:{queue_name}:worker:{worker_name}"


def beat(connection: redis.Redis, queue_name: str, worker_name: str) -> None:
    """This worker is alive (raises redis errors: the caller retries at its next beat)."""
    connection.set(worker_key(queue_name, worker_name), f"{time.time():.3f}", ex=TTL_SECONDS)


def live_workers(connection: redis.Redis, queue_name: str) -> list[str]:
    """Names of the workers of `queue_name` that beat within TTL_SECONDS."""
    prefix = worker_key(queue_name, "")
    return sorted(
        key.decode().removeprefix(prefix)
        for key in connection.scan_iter(match=f"{prefix}*", count=500)
    )
