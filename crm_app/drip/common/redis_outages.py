"""Riding out Redis: the errors that mean it went away, and the waits between tries."""

from __future__ import annotations

import redis

# Redis went away (a restart, a dropped connection, or a failover that left us on a
# replica that takes no writes yet): the worker, the scheduler and the pace wait and try
# again; none of them exits for it.
REDIS_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
)
WRITE_PROBE_KEY = "drip:write-probe"


def redis_away(error: BaseException) -> bool:
    """Whether `error` (a redis-py error) means Redis went away: one of REDIS_ERRORS; a
    Lua script whose write a replica refused, which redis-py reports as a plain
    ResponseError naming READONLY (RQ takes its scheduler lock with one); or a wait on
    the queue that Redis cut short as it turned into a replica (UNBLOCKED)."""
    if isinstance(error, REDIS_ERRORS):
        return True
    message = str(error)
    return isinstance(error, redis.exceptions.ResponseError) and (
        "READONLY" in message or message.startswith("UNBLOCKED")
    )


def check_writable(connection: redis.Redis) -> None:
    """Raises one of REDIS_ERRORS unless Redis answers and takes writes: a replica
    answers PING during a failover, and every write of RQ's then fails."""
    connection.set(WRITE_PROBE_KEY, "1", px=1000)


class RedisBackoff:
    """The waits between two tries while Redis is away: 0.5 s doubling up to 15 s, from
    the start again once it answers."""

    FIRST_SECONDS = 0.5
    MAX_SECONDS = 15.0

    def __init__(self) -> None:
        self.seconds = self.FIRST_SECONDS

    def next_wait(self) -> float:
        wait, self.seconds = self.seconds, min(self.seconds * 2, self.MAX_SECONDS)
        return wait

    def reset(self) -> None:
        self.seconds = self.FIRST_SECONDS
