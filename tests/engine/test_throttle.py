"""Login throttling's rules, its counters (in memory and in Redis), client addresses, and
password hashing's parameters and rehash-on-login."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from redis.asyncio import Redis

from hubbub.core.audit import Client
from hubbub.core.chat import Chat
from hubbub.core.limits import LoginThrottle
from hubbub.core.passwords import MEMORY_COST_KIB, PARALLELISM, TIME_COST, default_hasher
from hubbub.engine.base import Counters
from hubbub.engine.memory import MemoryBus, MemoryCounters, MemoryPresence
from hubbub.engine.redis.counters import RedisCounters
from hubbub.protocol.errors import RateLimited, Unauthorized
from hubbub.server.edge.clientaddr import TrustedProxies

PASSWORD = "correct horse"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# Counters


async def counters_behave(counters: Counters, expire: float) -> None:
    """The contract of both implementations; `expire` is a window they can wait out."""
    assert await counters.get(["x", "y"]) == [(0, 0.0), (0, 0.0)]
    await counters.hit(["x", "y"], 60)
    await counters.hit(["x"], 60)
    (x, x_left), (y, _) = await counters.get(["x", "y"])
    assert (x, y) == (2, 1)
    assert 59 < x_left <= 60
    await counters.clear("x")
    assert (await counters.get(["x"]))[0][0] == 0
    await counters.hit(["z"], expire)
    await counters.hit(["z"], 60)  # a later hit does not extend the window
    await asyncio.sleep(expire * 2)
    assert await counters.get(["z"]) == [(0, 0.0)]


async def test_memory_counters() -> None:
    await counters_behave(MemoryCounters(), 0.05)


async def test_redis_counters(client: Redis) -> None:
    await counters_behave(RedisCounters(client), 0.05)
    await RedisCounters(client).hit(["a:1.2.3.4"], 60)
    assert await client.exists("hubbub:{login}:a:1.2.3.4")  # one slot: the {login} tag


async def test_memory_counters_stay_bounded_and_evict_the_oldest_first() -> None:
    clock = Clock()
    counters = MemoryCounters(limit=3, clock=clock)
    for key in "abcd":
        await counters.hit([key], 60)
        clock.now += 1
    assert [n for n, _ in await counters.get(list("abcd"))] == [0, 1, 1, 1]
    clock.now += 60  # all expired: the next hit sweeps them
    await counters.hit(["e"], 60)
    assert len(counters._counts) == 1


# The rules


@pytest.fixture
def throttle() -> LoginThrottle:
    return LoginThrottle(MemoryCounters(), limit=3, window=60)


async def fail(throttle: LoginThrottle, user: str, address: str, times: int = 1) -> None:
    for _ in range(times):
        await throttle.failed(throttle.keys(user, address))


async def test_an_address_is_refused_at_the_limit_whatever_the_account(
    throttle: LoginThrottle,
) -> None:
    await fail(throttle, "alice", "1.1.1.1", 2)
    await throttle.check(throttle.keys("alice", "1.1.1.1"))
    await fail(throttle, "bob", "1.1.1.1")
    with pytest.raises(RateLimited) as refused:
        await throttle.check(throttle.keys("carol", "1.1.1.1"))
    assert 59 <= refused.value.retry_after <= 60
    await throttle.check(throttle.keys("carol", "2.2.2.2"))


async def test_an_attacked_account_stays_open_to_addresses_without_failures(
    throttle: LoginThrottle,
) -> None:
    for address in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        await fail(throttle, "Alice", address)
    for address in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        with pytest.raises(RateLimited):
            await throttle.check(throttle.keys("alice", address))
    await throttle.check(throttle.keys("alice", "9.9.9.9"))  # the owner, at home


async def test_success_forgives_the_pair_but_not_the_address(throttle: LoginThrottle) -> None:
    for address in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        await fail(throttle, "alice", address)
    keys = throttle.keys("alice", "3.3.3.3")
    await throttle.succeeded(keys)
    await throttle.check(keys)
    await fail(throttle, "bob", "4.4.4.4", 2)
    await throttle.succeeded(throttle.keys("mallory", "4.4.4.4"))  # their own account
    await fail(throttle, "carol", "4.4.4.4")
    with pytest.raises(RateLimited):
        await throttle.check(throttle.keys("mallory", "4.4.4.4"))


async def test_zero_failures_turns_throttling_off() -> None:
    throttle = LoginThrottle(MemoryCounters(), limit=0, window=60)
    await fail(throttle, "alice", "1.1.1.1", 5)
    await throttle.check(throttle.keys("alice", "1.1.1.1"))


# Client addresses


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    proxies = TrustedProxies.parse("10.0.0.0/8, 192.168.1.5")
    assert proxies.client("203.0.113.9", ["6.6.6.6"]) == "203.0.113.9"  # not a proxy
    assert proxies.client("10.1.2.3", ["198.51.100.7"]) == "198.51.100.7"
    # The client may write anything left of what the proxies appended: read from the right.
    assert proxies.client("10.1.2.3", ["6.6.6.6, 198.51.100.7, 192.168.1.5"]) == "198.51.100.7"
    assert proxies.client("10.1.2.3", ["6.6.6.6", "198.51.100.7"]) == "198.51.100.7"
    assert proxies.client("10.1.2.3", []) == "10.1.2.3"
    assert proxies.client("10.1.2.3", ["not an address"]) == "10.1.2.3"
    assert proxies.client("::ffff:10.0.0.1", ["[2001:db8::1]:443"]) == "2001:db8::1"
    assert TrustedProxies().client("10.1.2.3", ["6.6.6.6"]) == "10.1.2.3"
    with pytest.raises(ValueError, match="no address"):
        TrustedProxies.parse("10.0.0.0/8,nonsense")


# Passwords


def test_argon2id_parameters_meet_owasp_minimums() -> None:
    hasher = default_hasher()
    assert (hasher.time_cost, hasher.memory_cost, hasher.parallelism) == (
        TIME_COST,
        MEMORY_COST_KIB,
        PARALLELISM,
    )
    assert hasher.hash("x" * 8).startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert MEMORY_COST_KIB >= 19 * 1024 and TIME_COST >= 2  # OWASP's first option


async def test_old_parameters_verify_and_are_rehashed_at_login(tmp_path: Path) -> None:
    from hubbub.engine.sqlite.database import SqliteDatabase
    from hubbub.engine.sqlite.store import SqliteStore

    db = SqliteDatabase(tmp_path / "db.sqlite")
    db.open()
    try:
        store = SqliteStore(db)
        weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        await store.create_user("alice", weak.hash(PASSWORD), 1)
        strong = PasswordHasher(time_cost=1, memory_cost=16, parallelism=1)
        chat = Chat(store, None, MemoryBus(), MemoryPresence(), token_ttl=60, hasher=strong)  # type: ignore[arg-type]
        await chat.login("alice", PASSWORD, Client("127.0.0.1"))
        user = await store.get_user("alice")
        assert user is not None and "m=16," in user.password_hash
        await chat.login("alice", PASSWORD)  # still the same password
        with pytest.raises(Unauthorized):
            await chat.login("alice", "wrong password")
    finally:
        await db.close()
