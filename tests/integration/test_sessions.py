"""Sessions: every token is a login its owner can list and revoke (docs/security.md).

The tests of the shared server run once per engine (SQLite, PostgreSQL, PostgreSQL +
Redis); the last one revokes on one node of two and watches the other close the socket.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.api import Api
from support.pgutil import TestDatabase
from support.redis_server import RedisServer
from support.server import ServerProcess

PASSWORD = "correct horse"


async def login(api: Api, name: str, agent: str = "test-agent/1.0") -> str:
    """Log in with this User-Agent (`Api.call` sends aiohttp's own)."""
    async with api.session.post(
        api.base + "/api/v1/login",
        json={"username": name, "password": PASSWORD},
        headers={"User-Agent": agent},
    ) as r:
        body = await r.json()
        assert r.status == 200, body
    token: str = body["token"]
    return token


async def sessions(api: Api, token: str) -> list[dict[str, Any]]:
    status, body = await api.call("GET", "/api/v1/me/sessions", token)
    assert status == 200, body
    found: list[dict[str, Any]] = body["sessions"]
    return found


async def test_sessions_are_listed_newest_first_with_the_current_one_marked(api, new_user):
    me = await new_user()
    before = int(time.time() * 1000)
    phone = await login(api, me.name, "phone/2.0")
    listed = await sessions(api, me.token)
    assert listed[0]["user_agent"] == "phone/2.0"
    assert [s["current"] for s in listed] == [False, True]
    for s in listed:
        assert set(s) == {
            "id", "created", "last_used", "expires", "user_agent", "address", "current"
        }  # fmt: skip
        assert s["address"] == "127.0.0.1"
        assert s["id"] not in (me.token, phone) and len(s["id"]) >= 16
        assert s["created"] <= s["last_used"] < s["expires"]
    assert listed[0]["created"] >= before
    assert [s["current"] for s in await sessions(api, phone)] == [True, False]


async def test_revoking_a_session_closes_its_websockets_with_4001(
    api, new_user, connect, assert_error
):
    me = await new_user()
    other = await new_user()
    laptop = await login(api, me.name)
    doomed = await connect(laptop)
    survivor = await connect(me.token)
    laptop_id = next(s["id"] for s in await sessions(api, me.token) if not s["current"])

    # Someone else's session, or an unknown id, is not found (and nothing is revoked).
    assert_error(await api.call("DELETE", f"/api/v1/me/sessions/{laptop_id}", other.token),
                 404, "not_found")  # fmt: skip
    assert_error(await api.call("DELETE", "/api/v1/me/sessions/nope", me.token), 404, "not_found")
    assert (await api.call("GET", "/api/v1/me", laptop))[0] == 200

    status, _ = await api.call("DELETE", f"/api/v1/me/sessions/{laptop_id}", me.token)
    assert status == 204
    assert await doomed.expect_close() == 4001
    assert_error(await api.call("GET", "/api/v1/me", laptop), 401, "unauthorized")
    assert [s["current"] for s in await sessions(api, me.token)] == [True]
    await survivor.send({"type": "ping", "ref": "alive"})
    assert (await survivor.recv_type("pong"))["ref"] == "alive"
    assert_error(await api.call("DELETE", f"/api/v1/me/sessions/{laptop_id}", me.token),
                 404, "not_found")  # fmt: skip


async def test_revoking_all_sessions_keeps_the_current_one_only_when_asked(
    api, new_user, connect, assert_error
):
    me = await new_user()
    second = await login(api, me.name)
    doomed = await connect(second)
    status, _ = await api.call("DELETE", "/api/v1/me/sessions?keep_current=true", me.token)
    assert status == 204
    assert await doomed.expect_close() == 4001
    assert_error(await api.call("GET", "/api/v1/me", second), 401, "unauthorized")
    assert [s["current"] for s in await sessions(api, me.token)] == [True]

    mine = await connect(me.token)
    status, _ = await api.call("DELETE", "/api/v1/me/sessions", me.token)
    assert status == 204
    assert await mine.expect_close() == 4001
    assert_error(await api.call("GET", "/api/v1/me/sessions", me.token), 401, "unauthorized")
    assert_error(await api.call("DELETE", "/api/v1/me/sessions?keep_current=maybe", second),
                 401, "unauthorized")  # fmt: skip


# --- two nodes on Redis and PostgreSQL -----------------------------------------------------------


@pytest.fixture
def two_nodes(tmp_path: Path, server_factory: Any) -> Iterator[list[ServerProcess]]:
    (tmp_path / "redis-data").mkdir()
    redis = RedisServer(tmp_path / "redis-data")
    redis.start()
    database = TestDatabase(migrate=False)
    args = ["--database", database.ensure(), "--redis", redis.url]
    env = {"HUBBUB_LOGIN_FAILURES": "2", "HUBBUB_LOGIN_WINDOW": "60"}
    nodes = [server_factory(env=env, args=[*args, "--node-id", f"node-{n}"]) for n in "ab"]
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        redis.stop()
        database.drop()


async def test_revocations_and_login_limits_hold_across_nodes(
    two_nodes: list[ServerProcess], on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    """One test for both, as starting two nodes on Redis costs seconds: a session revoked
    on one node closes its WebSocket on the other, and failed logins on either count
    against one limit (the counters are in Redis)."""
    a, b = two_nodes
    name, token = await on(a).user()
    other = await login(on(b), name)
    doomed = await ws_to(b, other)
    other_id = next(s["id"] for s in await sessions(on(a), token) if not s["current"])
    status, _ = await on(a).call("DELETE", f"/api/v1/me/sessions/{other_id}", token)
    assert status == 204
    assert await doomed.expect_close() == 4001
    status, _ = await on(b).call("GET", "/api/v1/me", other)
    assert status == 401

    wrong = {"username": name, "password": "wrong password"}
    assert (await on(a).call("POST", "/api/v1/login", json=wrong))[0] == 401
    assert (await on(b).call("POST", "/api/v1/login", json=wrong))[0] == 401
    for node in (a, b):
        status, body = await on(node).call(
            "POST", "/api/v1/login", json={"username": name, "password": PASSWORD}
        )
        assert (status, body["error"]["code"]) == (429, "rate_limited")
