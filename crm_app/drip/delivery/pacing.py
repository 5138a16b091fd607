"""The send pace shared by every worker: a token bucket in Redis (SEND_RATE_PER_SECOND).

One Lua script takes tokens atomically (Redis' own clock, so workers on several
machines agree), refilled at the configured rate times the back-off factor. A 429
from SendGrid halves that factor for SEND_BACKOFF_SECONDS (kept in Redis, so every
worker slows down) and holds all sends for its Retry-After. With no rate configured
the bucket is skipped, but a 429 still holds and slows everyone. The 429s of one burst
(every request in flight may get one) halve the pace once, not once each.

Tokens are taken BEFORE a claim: a claimed message never waits for the pace, so what a
kill leaves `sending` is only what was in flight. Redis down: with a rate, take() waits
and retries (nothing is claimed meanwhile), never sending unpaced; without one, sends go.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from crm_app.drip.common.redis_outages import redis_away

log = logging.getLogger(__name__)

KEY_PREFIX = "drip:pace"
# The bucket holds at most this many seconds of tokens: a short burst, not a backlog.
BURST_SECONDS = 0.1
# A 429 halves the rate, down to this fraction of the configured one at most.
MIN_FACTOR = 1 / 64

# KEYS: bucket, factor, hold. ARGV: rate, wanted, burst seconds.
# Returns {granted, milliseconds to wait before asking again}.
_TAKE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local hold = tonumber(redis.call('GET', KEYS[3]) or '0')
if hold > now then
  return {0, math.ceil((hold - now) * 1000)}
end
local rate = tonumber(ARGV[1])
local wanted = tonumber(ARGV[2])
if rate <= 0 then
  return {wanted, 0}
end
rate = rate * tonumber(redis.call('GET', KEYS[2]) or '1')
local capacity = math.max(1, rate * tonumber(ARGV[3]))
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local granted = math.min(wanted, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], 60)
local wait = 0
if granted < wanted then
  wait = math.ceil((math.min(wanted - granted, 1) - tokens) / rate * 1000)
end
return {granted, math.max(wait, 0)}
"""

# KEYS: factor, hold. ARGV: backoff seconds, hold seconds, min factor.
_SLOW_DOWN = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local factor = tonumber(redis.call('GET', KEYS[1]) or '1')
if current <= now then
  -- The first 429 of a burst halves the pace; the others of the same hold (every
  -- request in flight may answer 429) do not halve it again.
  factor = math.max(factor / 2, tonumber(ARGV[3]))
  redis.call('SET', KEYS[1], tostring(factor), 'EX', tonumber(ARGV[1]))
end
local hold = now + tonumber(ARGV[2])
if hold > current then
  redis.call('SET', KEYS[2], tostring(hold), 'PX', math.ceil(tonumber(ARGV[2]) * 1000) + 1)
end
return tostring(factor)
"""


@dataclass
class Grant:
    granted: int
    wait_seconds: float  # before asking again, when fewer than wanted were granted


class Pacer:
    """The shared pace of one Redis; `rate` messages per second, 0 for no limit."""

    def __init__(self, connection: redis.Redis, rate: float, backoff_seconds: int = 60):
        self.connection = connection
        self.rate = max(0.0, float(rate))
        self.backoff_seconds = backoff_seconds
        self._take = connection.register_script(_TAKE)
        self._slow_down = connection.register_script(_SLOW_DOWN)
        self._keys = [f"{KEY_PREFIX}:bucket", f"{KEY_PREFIX}:factor", f"{KEY_PREFIX}:hold"]
        self._redis_wait = 0.5

    def take(self, wanted: int) -> Grant:
        """Up to `wanted` tokens now. Redis unreachable: none, and a growing wait."""
        if wanted <= 0:
            return Grant(0, 0.0)
        try:
            granted, wait_ms = self._take(keys=self._keys, args=[self.rate, wanted, BURST_SECONDS])
        except redis.exceptions.RedisError as error:
            if not redis_away(error):
                raise
            if self.rate <= 0:
                return Grant(wanted, 0.0)  # no pace to keep: only a 429's hold is lost
            wait = self._redis_wait
            self._redis_wait = min(self._redis_wait * 2, 10.0)
            log.warning("send pace: Redis unreachable (%s); waiting %.1f s", error, wait)
            return Grant(0, wait)
        self._redis_wait = 0.5
        return Grant(int(granted), int(wait_ms) / 1000)

    def slow_down(self, retry_after: float | None) -> None:
        """A 429: halve the pace for a while, and hold every send for Retry-After."""
        hold = retry_after if retry_after is not None else 1.0
        try:
            factor = self._slow_down(
                keys=self._keys[1:], args=[self.backoff_seconds, hold, MIN_FACTOR]
            )
            log.warning("SendGrid answered 429: pace x%s for %s s", factor, self.backoff_seconds)
        except redis.exceptions.RedisError as error:
            if not redis_away(error):
                raise
            log.warning("SendGrid answered 429; Redis unreachable, pace unchanged")

    def current_factor(self) -> float:
        return float(self.connection.get(self._keys[1]) or 1)
