"""Archiving and deleting rooms, and deleting accounts (docs/protocol.md, "Archiving and
deleting rooms; deleting an account"), on real nodes over real sockets: every engine through
the shared servers, storage read back from the SQLite file, and two nodes on Redis and
PostgreSQL for what must hold across nodes."""

from __future__ import annotations

import datetime
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from support.api import Api
from support.multinode import send
from support.pgutil import TestDatabase
from support.redis_server import REDIS_DURABLE, RedisServer
from support.server import ServerProcess
from support.wsutil import barrier, expect_error, join, recv_until, send_msg, uid

from hubbub.client import Client as SdkClient
from hubbub.client import HubbubError
from hubbub.engine.postgres.database import asyncpg_dsn
from hubbub.engine.redis.schema import room_key_pattern, stream_key

PASSWORD = "correct horse"


def names(rooms: list[dict[str, Any]]) -> list[str]:
    return [r["name"] for r in rooms]


async def rooms_of(api: Api, token: str, query: str = "") -> list[str]:
    status, body = await api.call("GET", f"/api/v1/rooms{query}", token)
    assert status == 200, body
    return names(body["rooms"])


async def patch(api: Api, room: str, token: str, archived: Any) -> tuple[int, Any]:
    return await api.call("PATCH", f"/api/v1/rooms/{room}", token, json={"archived": archived})


# Archiving


async def test_an_archived_room_is_read_only_out_of_lists_and_keeps_its_history(
    api: Api, connect: Any, assert_error: Any
) -> None:
    _owner, owner_token = await api.user()
    bob, bob_token = await api.user()
    room = await api.room(owner_token)
    status, _ = await api.call("PUT", f"/api/v1/rooms/{room}/members/{bob}", bob_token)
    assert status == 204
    ws = await connect(bob_token)
    await join(ws, room)
    sent = [await send_msg(ws, room, f"before {i}") for i in range(2)]

    assert_error(await patch(api, room, bob_token, True), 403, "forbidden")
    assert_error(await patch(api, room, owner_token, "yes"), 400, "bad_request")
    status, body = await patch(api, room, owner_token, True)
    assert status == 200, body
    assert body["room"]["archived"] is True and body["room"]["name"] == room
    status, body = await api.call("GET", f"/api/v1/rooms/{room}", bob_token)
    assert body["room"]["archived"] is True

    # Read-only, on the connection that joined before the archiving too.
    error = await expect_error(
        ws, {"type": "send", "room": room, "id": uid(), "body": "after"}, "forbidden"
    )
    assert error["message"] == f"#{room} is archived: it is read-only"
    # Out of the lists, unless asked for.
    assert room not in await rooms_of(api, bob_token)
    assert room in await rooms_of(api, bob_token, "?archived=true")
    assert all(
        r["archived"]
        for r in (await api.call("GET", "/api/v1/rooms?archived=true", bob_token))[1]["rooms"]
    )
    status, me = await api.call("GET", "/api/v1/me", bob_token)
    assert room not in names(me["rooms"])
    # History stays readable.
    status, history = await api.call("GET", f"/api/v1/rooms/{room}/messages", bob_token)
    assert status == 200
    assert [m["body"] for m in history["messages"]] == ["before 0", "before 1"]
    assert [m["seq"] for m in history["messages"]] == [a["seq"] for a in sent]


async def test_an_archived_public_room_can_be_joined_to_read_but_its_members_cannot_change(
    api: Api, connect: Any, assert_error: Any
) -> None:
    _owner, owner_token = await api.user()
    bob, bob_token = await api.user()
    carol, carol_token = await api.user()
    room = await api.room(owner_token)
    await api.call("PUT", f"/api/v1/rooms/{room}/members/{bob}", owner_token)
    owner_ws = await connect(owner_token)
    await join(owner_ws, room)
    await send_msg(owner_ws, room, "kept")
    assert (await patch(api, room, owner_token, True))[0] == 200

    ws = await connect(carol_token)
    joined = await join(ws, room, since=0)
    assert joined["seq"] == 1
    replayed, _ = await recv_until(ws, lambda f: f["type"] == "message")
    assert replayed["body"] == "kept"
    status, body = await api.call("GET", f"/api/v1/rooms/{room}", carol_token)
    assert carol not in body["room"]["members"]  # reading made no membership
    await expect_error(ws, {"type": "send", "room": room, "id": uid(), "body": "x"}, "forbidden")

    base = f"/api/v1/rooms/{room}"
    for method, path, token in [
        ("PUT", f"{base}/members/{carol}", carol_token),  # joining oneself
        ("PUT", f"{base}/members/{carol}", owner_token),  # an invite
        ("DELETE", f"{base}/members/{bob}", owner_token),  # a kick
        ("PUT", f"{base}/bans/{carol}", owner_token),
        ("DELETE", f"{base}/bans/{carol}", owner_token),
        ("PUT", f"{base}/moderators/{bob}", owner_token),
    ]:
        err = assert_error(await api.call(method, path, token), 403, "forbidden")
        assert "is archived" in err["message"], (method, path, err)
    # Leaving is still possible.
    status, _ = await api.call("DELETE", f"{base}/members/{bob}", bob_token)
    assert status == 204


async def test_unarchiving_restores_sends_and_the_lists(
    api: Api, connect: Any, assert_error: Any
) -> None:
    _owner, owner_token = await api.user()
    room = await api.room(owner_token, private=True)
    ws = await connect(owner_token)
    await join(ws, room)
    assert (await patch(api, room, owner_token, True))[0] == 200
    await expect_error(ws, {"type": "send", "room": room, "id": uid(), "body": "x"}, "forbidden")
    status, body = await patch(api, room, owner_token, False)
    assert status == 200 and body["room"]["archived"] is False
    ack = await send_msg(ws, room, "back")
    assert ack["seq"] == 1
    assert room in await rooms_of(api, owner_token)
    assert room not in await rooms_of(api, owner_token, "?archived=true")
    # Asking for what already is, or for nothing, changes nothing and answers the room.
    status, body = await api.call("PATCH", f"/api/v1/rooms/{room}", owner_token, json={})
    assert status == 200 and body["room"]["archived"] is False
    # A private room one cannot see is not found, as every other call says of it.
    _, outsider = await api.user()
    assert_error(await patch(api, room, outsider, True), 404, "not_found")


# Deleting rooms


async def test_a_deleted_room_tells_its_connections_and_answers_404_to_everyone(
    api: Api, connect: Any, assert_error: Any
) -> None:
    _owner, owner_token = await api.user()
    bob, bob_token = await api.user()
    room = await api.room(owner_token)
    await api.call("PUT", f"/api/v1/rooms/{room}/members/{bob}", owner_token)
    await api.call("PUT", f"/api/v1/rooms/{room}/moderators/{bob}", owner_token)
    bobs = [await connect(bob_token), await connect(bob_token)]
    for ws in bobs:
        await join(ws, room)
    owner_ws = await connect(owner_token)
    await join(owner_ws, room)
    await send_msg(owner_ws, room, "soon gone")

    assert_error(await api.call("DELETE", f"/api/v1/rooms/{room}", bob_token), 403, "forbidden")
    status, _ = await api.call("DELETE", f"/api/v1/rooms/{room}", owner_token)
    assert status == 204
    for ws in [*bobs, owner_ws]:
        left, _ = await recv_until(ws, lambda f: f["type"] == "left")
        assert left == {"type": "left", "room": room, "reason": "deleted"}
        await expect_error(
            ws, {"type": "send", "room": room, "id": uid(), "body": "x"}, "not_found"
        )
        await expect_error(ws, {"type": "join", "room": room}, "not_found")
    for token in (owner_token, bob_token):
        assert_error(await api.call("GET", f"/api/v1/rooms/{room}", token), 404, "not_found")
        assert_error(
            await api.call("GET", f"/api/v1/rooms/{room}/messages", token), 404, "not_found"
        )
        assert_error(await api.call("DELETE", f"/api/v1/rooms/{room}", token), 404, "not_found")
        assert room not in await rooms_of(api, token)
        assert room not in await rooms_of(api, token, "?archived=true")


async def test_a_deleted_name_is_held_for_the_grace_with_the_date_it_is_free(
    api: Api, assert_error: Any
) -> None:
    _, owner_token = await api.user()
    _, other_token = await api.user()
    room = await api.room(owner_token)
    before = datetime.datetime.now(datetime.UTC)
    assert (await api.call("DELETE", f"/api/v1/rooms/{room}", owner_token))[0] == 204
    for token in (owner_token, other_token):
        err = assert_error(
            await api.call("POST", "/api/v1/rooms", token, json={"name": room}), 409, "conflict"
        )
        found = re.fullmatch(
            rf"#{room} was deleted; the name is free again after (\S+Z)", err["message"]
        )
        assert found, err
        free = datetime.datetime.strptime(found[1], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC
        )
        week = datetime.timedelta(days=7)
        assert (
            before + week - datetime.timedelta(seconds=2)
            <= free
            <= before + week + datetime.timedelta(minutes=1)
        )


def sqlite_rows(node: ServerProcess, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{node.data / 'hubbub.db'}?mode=ro", uri=True) as db:
        return db.execute(sql, args).fetchall()


async def test_sqlite_keeps_tombstones_and_after_the_grace_the_name_starts_afresh(
    server_factory: Any, on: Callable[[ServerProcess], Api], connect: Any
) -> None:
    node = server_factory(args=["--room-name-grace", "0"])
    api = on(node)
    _, owner_token = await api.user()
    room = await api.room(owner_token)
    ws = await connect(owner_token, url=node.ws_url)
    await join(ws, room)
    for i in range(3):
        await send_msg(ws, room, f"secret {i}")
    assert (await api.call("DELETE", f"/api/v1/rooms/{room}", owner_token))[0] == 204
    rows = sqlite_rows(node, "SELECT seq, body, deleted FROM messages WHERE room = ?", room)
    assert rows == [(1, "", 1), (2, "", 1), (3, "", 1)]
    assert sqlite_rows(node, "SELECT count(*) FROM memberships WHERE room = ?", room) == [(0,)]

    _, other_token = await api.user()
    status, body = await api.call("POST", "/api/v1/rooms", other_token, json={"name": room})
    assert status == 201, body
    assert body["room"]["last_seq"] == 0 and body["room"]["archived"] is False
    other_ws = await connect(other_token, url=node.ws_url)
    await join(other_ws, room)
    assert (await send_msg(other_ws, room, "fresh"))["seq"] == 1
    rows = sqlite_rows(node, "SELECT seq, body, deleted FROM messages WHERE room = ?", room)
    assert rows == [(1, "fresh", 0)]


# Deleting accounts


async def test_a_deleted_account_is_gone_for_good_and_its_messages_keep_their_sender(
    api: Api, connect: Any, assert_error: Any
) -> None:
    owner, owner_token = await api.user()
    bob, bob_token = await api.user(password=PASSWORD)
    room = await api.room(owner_token)
    owned = await api.room(bob_token)  # a room bob owns
    await api.call("PUT", f"/api/v1/rooms/{room}/members/{bob}", owner_token)
    await api.call("PUT", f"/api/v1/rooms/{owned}/members/{owner}", owner_token)
    await api.call("PUT", f"/api/v1/rooms/{owned}/moderators/{owner}", bob_token)
    ws = await connect(bob_token)
    await join(ws, room)
    await send_msg(ws, room, "from bob")

    assert_error(
        await api.call("DELETE", "/api/v1/me", bob_token, json={"password": "wrong one"}),
        401,
        "unauthorized",
    )
    assert_error(await api.call("DELETE", "/api/v1/me", bob_token, json={}), 400, "bad_request")
    await barrier(ws)  # still connected after the refusals
    status, _ = await api.call("DELETE", "/api/v1/me", bob_token, json={"password": PASSWORD})
    assert status == 204
    assert await ws.expect_close() == 4001
    assert_error(await api.call("GET", "/api/v1/me", bob_token), 401, "unauthorized")
    assert_error(
        await api.call("POST", "/api/v1/login", json={"username": bob, "password": PASSWORD}),
        401,
        "unauthorized",
    )
    err = assert_error(
        await api.call(
            "POST", "/api/v1/users", json={"username": bob.upper(), "password": PASSWORD}
        ),
        409,
        "conflict",
    )
    assert "deleted account" in err["message"]
    status, body = await api.call("GET", f"/api/v1/rooms/{room}", owner_token)
    assert bob not in body["room"]["members"]
    status, history = await api.call("GET", f"/api/v1/rooms/{room}/messages", owner_token)
    assert [(m["from"], m["body"]) for m in history["messages"]] == [(bob, "from bob")]
    # The rooms it owned stay, and their moderators keep moderating.
    status, body = await api.call("GET", f"/api/v1/rooms/{owned}", owner_token)
    assert status == 200 and body["room"]["owner"] == bob
    _, carol_token = await api.user()
    carol = (await api.call("GET", "/api/v1/me", carol_token))[1]["user"]["name"]
    assert (await api.call("PUT", f"/api/v1/rooms/{owned}/members/{carol}", owner_token))[0] == 204
    assert (await api.call("DELETE", f"/api/v1/rooms/{owned}/members/{carol}", owner_token))[
        0
    ] == 204


# The audit log


async def test_archiving_deleting_and_account_deletion_are_audited(
    server_factory: Any, on: Callable[[ServerProcess], Api], wait_for: Any
) -> None:
    node = server_factory(env={"HUBBUB_LOG_LEVEL": "warning"})
    api = on(node)
    owner, owner_token = await api.user(password=PASSWORD)
    bob, bob_token = await api.user()
    room = await api.room(owner_token)
    await api.call("PUT", f"/api/v1/rooms/{room}/members/{bob}", owner_token)
    for method, path, token, payload, status in [
        ("PATCH", f"/api/v1/rooms/{room}", bob_token, {"archived": True}, 403),
        ("PATCH", f"/api/v1/rooms/{room}", owner_token, {"archived": True}, 200),
        ("PATCH", f"/api/v1/rooms/{room}", owner_token, {"archived": False}, 200),
        ("DELETE", f"/api/v1/rooms/{room}", bob_token, None, 403),
        ("DELETE", f"/api/v1/rooms/{room}", owner_token, None, 204),
        ("DELETE", "/api/v1/me", owner_token, {"password": "not the one"}, 401),
        ("DELETE", "/api/v1/me", owner_token, {"password": PASSWORD}, 204),
    ]:
        assert (await api.call(method, path, token, json=payload))[0] == status, (method, path)
    expected = [
        ("room_archived", bob, room, "forbidden"),
        ("room_archived", owner, room, "ok"),
        ("room_unarchived", owner, room, "ok"),
        ("room_deleted", bob, room, "forbidden"),
        ("room_deleted", owner, room, "ok"),
        ("account_deleted", owner, None, "unauthorized"),
        ("account_deleted", owner, None, "ok"),
    ]
    kinds = {event for event, *_ in expected}

    async def fetch() -> list[dict[str, Any]]:
        return [e for e in node.audit_events() if e["event"] in kinds]

    events = await wait_for(fetch, lambda found: len(found) >= len(expected), what="audit lines")
    assert [(e["event"], e["actor"], e["room"], e["outcome"]) for e in events] == expected
    assert PASSWORD not in node.log() and "not the one" not in node.log()


# The SDK


async def test_the_sdk_archives_unarchives_deletes_rooms_and_deletes_the_account(
    server: ServerProcess, api: Api
) -> None:
    name, _ = await api.user(password=PASSWORD)
    client = SdkClient(server.url)
    try:
        await client.login(name, PASSWORD)
        room = (await client.create_room(uid("r").lower()))["name"]
        archived = await client.archive_room(room)
        assert archived["archived"] is True
        assert room in names(await client.rooms(archived=True))
        assert room not in names(await client.rooms())
        assert (await client.unarchive_room(room))["archived"] is False
        assert room in names(await client.rooms())
        await client.delete_room(room)
        with pytest.raises(HubbubError) as gone:
            await client.room(room)
        assert gone.value.code == "not_found"
        with pytest.raises(HubbubError) as wrong:
            await client.delete_account("not it")
        assert wrong.value.code == "unauthorized"
        await client.delete_account(PASSWORD)
        assert client.token is None
    finally:
        await client.close()
    assert (await api.call("POST", "/api/v1/login", json={"username": name, "password": PASSWORD}))[
        0
    ] == 401


# Several nodes on Redis and PostgreSQL


@pytest.fixture
def two_nodes(
    tmp_path: Path, server_factory: Any
) -> Iterator[tuple[RedisServer, str, list[ServerProcess]]]:
    """Two nodes on a private redis-server and a throwaway PostgreSQL database, with no
    grace on deleted names (so a name is purged and taken again at once)."""
    (tmp_path / "redis-data").mkdir()
    redis = RedisServer(tmp_path / "redis-data", *REDIS_DURABLE)
    redis.start()
    database = TestDatabase(migrate=False)
    url = database.ensure()
    nodes: list[ServerProcess] = []
    try:
        for name in ("node-a", "node-b"):
            args = ["--database", url, "--redis", redis.url, "--node-id", name]
            nodes.append(
                server_factory(args=[*args, "--rate-limit", "0", "--room-name-grace", "0"])
            )
        yield redis, url, nodes
    finally:
        for node in nodes:
            node.stop()
        redis.stop()
        database.drop()


async def test_across_nodes_archive_and_delete_reach_every_node_and_redact_redis_and_postgresql(
    two_nodes: tuple[RedisServer, str, list[ServerProcess]],
    on: Callable[[ServerProcess], Api],
    ws_to: Any,
    wait_for: Any,
) -> None:
    redis, url, (a, b) = two_nodes
    _owner, owner_token = await on(a).user()
    _bob, bob_token = await on(b).user()
    room = await on(a).room(owner_token)
    bob_ws = await ws_to(b, bob_token)
    await bob_ws.join(room)
    for i in range(3):
        assert (await send(bob_ws, room, uid("m"), f"secret {i}"))["type"] == "ack"

    # Archived on node a: node b refuses bob's sends once the notice is there.
    assert (await patch(on(a), room, owner_token, True))[0] == 200

    async def probe() -> dict[str, Any]:
        return await send(bob_ws, room, uid("p"), "probe")

    refused = await wait_for(probe, lambda r: r["type"] == "error", what="the archive on node b")
    assert refused["code"] == "forbidden" and "is archived" in refused["message"]
    assert (await patch(on(a), room, owner_token, False))[0] == 200
    await wait_for(probe, lambda r: r["type"] == "ack", what="the unarchive on node b")

    # Deleted on node a: bob's connection on node b is told, and nothing keeps a body.
    assert (await on(a).call("DELETE", f"/api/v1/rooms/{room}", owner_token))[0] == 204
    left, _ = await recv_until(bob_ws, lambda f: f["type"] == "left")
    assert left == {"type": "left", "room": room, "reason": "deleted"}
    client = redis.client()
    try:
        entries = await client.xrange(stream_key(room))
        assert entries, "the stream keeps its tombstones"
        assert all(fields[b"body"] == b"" and fields[b"deleted"] == b"1" for _, fields in entries)
        assert [k async for k in client.scan_iter(match=f"hubbub:{{{room}}}:id:*")] == []
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            rows = await conn.fetch("SELECT body, deleted FROM messages WHERE room = $1", room)
        finally:
            await conn.close()
        assert all(row["body"] == "" and row["deleted"] for row in rows)

        # No grace here: the name is taken again at once, and nothing of the old room is left.
        status, body = await on(b).call("POST", "/api/v1/rooms", bob_token, json={"name": room})
        assert status == 201, body
        assert body["room"]["last_seq"] == 0
        assert await client.exists(stream_key(room)) == 0
        keys = [k async for k in client.scan_iter(match=room_key_pattern(room))]
        assert keys == []
        await bob_ws.join(room)
        fresh = await send(bob_ws, room, uid("f"), "fresh")
        assert fresh["seq"] == 1
        status, history = await on(a).call("GET", f"/api/v1/rooms/{room}/messages", bob_token)
        assert [(m["seq"], m["body"]) for m in history["messages"]] == [(1, "fresh")]
    finally:
        await client.aclose()
