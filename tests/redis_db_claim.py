"""A Redis database of the run's own on a shared Redis server (TEST_REDIS_URL).

Two test runs on one machine (two clones, a developer and CI) would otherwise share
one database: each flushes it before every test, wiping the other's jobs, and each
sees the other's workers. A run claims a free database with a lock key in database 0
(`SET drip-test-db-lock:<n> <token> NX EX <ttl>`), keeps it alive from a background
thread while the run lives, and deletes it at the end. A run that dies without
releasing its claim loses it when the key expires.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

LOCK_PREFIX = "drip-test-db-lock:"
# Not 0: it holds the locks, and it is what a plain REDIS_URL means (`make run`, the
# analytics bench). Not 13: bench/delivery_bench.py's default. Not 15: the database
# this suite used for every run before, which checkouts without this claim still flush.
CANDIDATES = tuple(n for n in range(1, 16) if n not in (13, 15))
TTL_SECONDS = 60

# Refresh only our own claim; take it back if it expired (a long pause) and is free.
_REFRESH = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder then
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
    return 1
end
return 0
"""
# Never delete a claim another run took over.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class NoFreeRedisDatabase(RuntimeError):
    pass


def database_url(server_url: str, number: int) -> str:
    """`server_url` with its database set to `number` (redis://, rediss:// or unix://)."""
    parts = urlsplit(server_url)
    if parts.scheme == "unix":
        # urlunsplit would drop the "//" a unix:// URL needs.
        query = urlencode({**dict(parse_qsl(parts.query)), "db": number})
        return f"unix://{parts.netloc}{parts.path}?{query}"
    return urlunsplit(parts._replace(path=f"/{number}"))


class RedisDatabaseClaim:
    """One claimed database number on the server at `server_url`."""

    def __init__(
        self,
        server_url: str,
        *,
        candidates: tuple[int, ...] = CANDIDATES,
        ttl: int = TTL_SECONDS,
        prefix: str = LOCK_PREFIX,
    ):
        self.server_url = server_url
        self.candidates = candidates
        self.ttl = ttl
        self.prefix = prefix
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self.locks = redis.Redis.from_url(database_url(server_url, 0))
        self.number: int | None = None

    @property
    def key(self) -> str:
        return f"{self.prefix}{self.number}"

    @property
    def url(self) -> str:
        return database_url(self.server_url, self.number)

    def acquire(self, wait: float = 300.0, poll: float = 1.0) -> str:
        """Claim the first free candidate, waiting up to `wait` seconds for one to free up."""
        deadline = time.monotonic() + wait
        while True:
            for number in self.candidates:
                if self.locks.set(f"{self.prefix}{number}", self.token, nx=True, ex=self.ttl):
                    self.number = number
                    # A run that died may have left keys behind in it.
                    redis.Redis.from_url(self.url).flushdb()
                    return self.url
            if time.monotonic() >= deadline:
                raise NoFreeRedisDatabase(
                    f"no free Redis database on {self.server_url} after {wait:.0f} s: every one "
                    f"of {list(self.candidates)} is claimed by another test run "
                    f"(keys {self.prefix}<n> in database 0). Wait for those runs to end, or "
                    f"delete the keys of runs that are gone."
                )
            time.sleep(poll)  # polling for a free database, not waiting out a lease

    def refresh(self) -> bool:
        """Push the claim's expiry back; False if another run holds it now."""
        return bool(self.locks.eval(_REFRESH, 1, self.key, self.token, self.ttl))

    def release(self) -> None:
        if self.number is not None:
            self.locks.eval(_RELEASE, 1, self.key, self.token)
            self.number = None


@contextmanager
def claimed_redis_database(server_url: str, **kwargs) -> Iterator[str]:
    """Yield the URL of a database of our own on `server_url`, kept claimed until exit."""
    wait = kwargs.pop("wait", 300.0)
    claim = RedisDatabaseClaim(server_url, **kwargs)
    url = claim.acquire(wait=wait)
    stop = threading.Event()

    def keep_alive() -> None:
        while not stop.wait(claim.ttl / 3):
            try:
                if not claim.refresh():
                    print(
                        f"drip tests: lost the claim on Redis database {claim.number} "
                        "to another run; the two runs may now disturb each other",
                        file=sys.__stderr__,
                    )
            except redis.RedisError:
                pass  # a blip: the next refresh comes well before the key expires

    thread = threading.Thread(target=keep_alive, name="redis-db-claim", daemon=True)
    thread.start()
    try:
        yield url
    finally:
        stop.set()
        thread.join(5)
        claim.release()
