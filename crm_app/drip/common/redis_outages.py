"""Riding out Redis: the errors that mean it went away, and the waits between tries."""

from __future__ import annotations

import redis

# Redis went away (a restart, a dropped connection): the worker, the scheduler and the
# pace wait and try again; none of them exits for it.
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


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
