"""Each test run claims a Redis database of its own on a shared server (TEST_REDIS_URL)."""

from __future__ import annotations

import pytest
import redis

from crm_app.embedded_redis import start_embedded_redis, stop_embedded_redis
from tests.redis_db_claim import (
    LOCK_PREFIX,
    NoFreeRedisDatabase,
    RedisDatabaseClaim,
    claimed_redis_database,
    database_url,
)


@pytest.fixture
def server(tmp_path):
    """A redis-server of the test's own: claims here never touch a real run's."""
    process, url = start_embedded_redis(tmp_path / "redis")
    yield url
    stop_embedded_redis(process)


def _locks(server_url: str) -> redis.Redis:
    return redis.Redis.from_url(database_url(server_url, 0), decode_responses=True)


def test_database_url_sets_the_database_of_tcp_and_unix_socket_urls():
    assert database_url("redis://127.0.0.1:6379", 4) == "redis://127.0.0.1:6379/4"
    assert database_url("redis://127.0.0.1:6379/", 4) == "redis://127.0.0.1:6379/4"
    assert database_url("unix:///tmp/r.sock?db=1", 4) == "unix:///tmp/r.sock?db=4"


def test_two_runs_at_once_get_different_databases_and_a_released_one_is_reused(server):
    first, second = RedisDatabaseClaim(server), RedisDatabaseClaim(server)
    assert first.acquire(wait=0) == database_url(server, 1)
    assert second.acquire(wait=0) == database_url(server, 2)
    assert _locks(server).get(f"{LOCK_PREFIX}1") == first.token
    assert 0 < _locks(server).ttl(f"{LOCK_PREFIX}1") <= first.ttl

    first.release()
    assert _locks(server).get(f"{LOCK_PREFIX}1") is None
    assert RedisDatabaseClaim(server).acquire(wait=0) == database_url(server, 1)


def test_when_every_database_is_claimed_the_run_fails_saying_why(server):
    RedisDatabaseClaim(server, candidates=(1, 2)).acquire(wait=0)
    RedisDatabaseClaim(server, candidates=(1, 2)).acquire(wait=0)

    with pytest.raises(NoFreeRedisDatabase, match=r"every one of \[1, 2\] is claimed"):
        RedisDatabaseClaim(server, candidates=(1, 2)).acquire(wait=0.2, poll=0.05)


def test_a_claimed_database_starts_empty(server):
    redis.Redis.from_url(database_url(server, 1)).set("left-by-a-dead-run", "x")

    url = RedisDatabaseClaim(server).acquire(wait=0)

    assert url == database_url(server, 1)
    assert redis.Redis.from_url(url).dbsize() == 0


def test_refresh_pushes_the_expiry_back_and_never_takes_another_runs_claim(server):
    claim = RedisDatabaseClaim(server, ttl=60)
    claim.acquire(wait=0)
    key, locks = claim.key, _locks(server)
    locks.expire(key, 5)  # as if the claim were about to lapse

    assert claim.refresh() is True
    assert locks.ttl(key) > 5

    locks.set(key, "another-run")  # it lapsed and another run took it
    assert claim.refresh() is False
    claim.release()
    assert locks.get(key) == "another-run"


def test_the_context_manager_holds_the_claim_while_the_run_lives_and_releases_it(server):
    with claimed_redis_database(server, candidates=(3,), wait=0) as url:
        assert url == database_url(server, 3)
        assert _locks(server).exists(f"{LOCK_PREFIX}3")
    assert not _locks(server).exists(f"{LOCK_PREFIX}3")
