"""Protocol v2, section 1: what the log's updates make of the room's current state, on the
SQLite and PostgreSQL engines (history, threads, the edits call, topics, redaction down
to the storage, the audit of moderators' deletes), and the Redis engine's refusal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest
from support.server import ServerProcess
from support.wsutil import acked, barrier, expect_error, join, request, send_msg, uid, user

from hubbub.engine.postgres.database import asyncpg_dsn
from hubbub.protocol.rules import NO_UPDATES

SQL_ENGINES = pytest.mark.parametrize("shared_server", ["sqlite", "postgres"], indirect=True)

Frame = dict[str, Any]


async def history(api: Any, token: str, room: str, query: str = "") -> Frame:
    status, body = await api.call("GET", f"/api/v1/rooms/{room}/messages{query}", token)
    assert status == 200, body
    return dict(body)


async def joined(api: Any, connect: Any, room: str) -> tuple[str, str, Any]:
    name, token = await user(api)
    ws = await connect(token)
    await join(ws, room)
    return name, token, ws


@SQL_ENGINES
async def test_history_gives_messages_in_their_current_state(api: Any, connect: Any) -> None:
    owner, owner_token = await user(api)
    room = await api.room(owner_token)
    o = await connect(owner_token)
    await join(o, room)
    bob, bob_token, b = await joined(api, connect, room)
    first = (await send_msg(o, room, "frist"))["seq"]
    edit = await acked(o, {"type": "edit", "room": room, "target": first, "body": "first"})
    second = (await send_msg(b, room, "second"))["seq"]
    await acked(b, {"type": "react", "room": room, "target": first, "key": "👍"})
    await acked(o, {"type": "react", "room": room, "target": first, "key": "👍"})
    await acked(b, {"type": "react", "room": room, "target": first, "key": ":tada:"})
    await acked(o, {"type": "delete", "room": room, "target": second})
    reply = await acked(b, {"type": "send", "room": room, "body": "re", "reply_to": first})

    page = await history(api, bob_token, room)
    assert page["more"] is False
    messages = page["messages"]
    assert [m["seq"] for m in messages] == [first, second, reply["seq"]]  # no updates
    assert messages[0]["body"] == "first" and messages[0]["edited"] == edit["ts"]
    assert messages[0]["reactions"] == [
        {"key": "👍", "count": 2, "users": [bob, owner], "me": True},
        {"key": ":tada:", "count": 1, "users": [bob], "me": True},
    ]
    assert messages[1] == {
        "room": room,
        "seq": second,
        "id": messages[1]["id"],
        "from": bob,
        "ts": messages[1]["ts"],
        "deleted": True,
    }
    assert messages[2]["reply_to"] == first and "reactions" not in messages[2]
    # `me` is the caller's.
    mine = (await history(api, owner_token, room))["messages"][0]["reactions"]
    assert [r["me"] for r in mine] == [True, False]
    # The history frame gives the same views.
    frame = await request(o, {"type": "history", "room": room})
    assert frame["messages"] == (await history(api, owner_token, room))["messages"]
    # `limit` counts messages, whatever updates lie between them.
    last_two = await history(api, bob_token, room, "?limit=2")
    assert [m["seq"] for m in last_two["messages"]] == [second, reply["seq"]]
    assert last_two["more"] is True


@SQL_ENGINES
async def test_a_reaction_names_its_first_ten_users(api: Any, connect: Any) -> None:
    _, owner_token = await user(api)
    room = await api.room(owner_token)
    o = await connect(owner_token)
    await join(o, room)
    target = (await send_msg(o, room, "vote"))["seq"]
    names = []
    for _ in range(12):
        name, _, ws = await joined(api, connect, room)
        await acked(ws, {"type": "react", "room": room, "target": target, "key": "+1"})
        names.append(name)
    (reaction,) = (await history(api, owner_token, room))["messages"][0]["reactions"]
    assert reaction == {"key": "+1", "count": 12, "users": names[:10], "me": False}


@SQL_ENGINES
async def test_threads_are_paged_apart_and_summed_up_on_their_root(
    api: Any, connect: Any, assert_error: Any
) -> None:
    _, owner_token = await user(api)
    room = await api.room(owner_token)
    o = await connect(owner_token)
    await join(o, room)
    root = (await send_msg(o, room, "root"))["seq"]
    replies = [
        await acked(o, {"type": "send", "room": room, "body": f"r{i}", "thread": root})
        for i in range(3)
    ]
    after = (await send_msg(o, room, "after"))["seq"]
    await acked(o, {"type": "delete", "room": room, "target": replies[1]["seq"]})

    main = (await history(api, owner_token, room))["messages"]
    assert [m["seq"] for m in main] == [root, after]  # the replies are in the thread only
    last = replies[-1]
    assert main[0]["replies"] == {"count": 3, "last_seq": last["seq"], "last_ts": last["ts"]}
    assert "replies" not in main[1]

    thread = await history(api, owner_token, room, f"?thread={root}")
    assert [m["seq"] for m in thread["messages"]] == [root] + [r["seq"] for r in replies]
    assert thread["messages"][2]["deleted"] is True  # a deleted reply stays in its place
    assert all(m["thread"] == root for m in thread["messages"][1:])
    paged = await history(api, owner_token, room, f"?thread={root}&limit=2")
    assert [m["seq"] for m in paged["messages"]] == [r["seq"] for r in replies[1:]]
    assert paged["more"] is True
    older = await history(api, owner_token, room, f"?thread={root}&before={replies[1]['seq']}")
    assert [m["seq"] for m in older["messages"]] == [root, replies[0]["seq"]]
    frame = await request(o, {"type": "history", "room": room, "thread": root})
    assert frame["messages"] == thread["messages"]

    for bad in (replies[0]["seq"], after + 100, 0):
        result = await api.call("GET", f"/api/v1/rooms/{room}/messages?thread={bad}", owner_token)
        assert_error(result, 404, "not_found")
    assert_error(
        await api.call("GET", f"/api/v1/rooms/{room}/messages?thread=x", owner_token),
        400,
        "bad_request",
    )


@SQL_ENGINES
async def test_the_edits_call_lists_versions_oldest_first(
    api: Any, connect: Any, assert_error: Any
) -> None:
    _, owner_token = await user(api)
    room = await api.room(owner_token)
    o = await connect(owner_token)
    await join(o, room)
    sent = await send_msg(o, room, "v1")
    edits = [
        await acked(o, {"type": "edit", "room": room, "target": sent["seq"], "body": f"v{i}"})
        for i in (2, 3)
    ]
    path = f"/api/v1/rooms/{room}/messages/{sent['seq']}/edits"
    status, body = await api.call("GET", path, owner_token)
    assert status == 200, body
    assert body == {
        "versions": [
            {"seq": sent["seq"], "body": "v1", "ts": sent["ts"]},
            {"seq": edits[0]["seq"], "body": "v2", "ts": edits[0]["ts"]},
            {"seq": edits[1]["seq"], "body": "v3", "ts": edits[1]["ts"]},
        ]
    }
    plain = await send_msg(o, room, "never edited")
    status, body = await api.call(
        "GET", f"/api/v1/rooms/{room}/messages/{plain['seq']}/edits", owner_token
    )
    assert body == {"versions": [{"seq": plain["seq"], "body": "never edited", "ts": plain["ts"]}]}
    base = f"/api/v1/rooms/{room}/messages"
    for seq in (edits[0]["seq"], 9999, "x", -1):  # an update, a missing seq, no seq at all
        assert_error(await api.call("GET", f"{base}/{seq}/edits", owner_token), 404, "not_found")
    await acked(o, {"type": "delete", "room": room, "target": sent["seq"]})
    assert_error(await api.call("GET", path, owner_token), 404, "not_found")


@SQL_ENGINES
async def test_the_topic_is_the_owners_and_the_moderators_and_an_update_of_the_log(
    api: Any, connect: Any, assert_error: Any
) -> None:
    owner, owner_token = await user(api)
    room = await api.room(owner_token)
    moderator, moderator_token, _ = await joined(api, connect, room)
    _, member_token, member_ws = await joined(api, connect, room)
    path = f"/api/v1/rooms/{room}"
    assert (await api.call("PUT", f"{path}/moderators/{moderator}", owner_token))[0] == 204
    last = (await send_msg(member_ws, room, "before"))["seq"]

    status, body = await api.call("PATCH", path, owner_token, json={"topic": "plans"})
    assert status == 200 and body["room"]["topic"] == "plans", body
    status, body = await api.call("PATCH", path, moderator_token, json={"topic": "more plans"})
    assert status == 200 and body["room"]["topic"] == "more plans", body
    assert_error(await api.call("PATCH", path, member_token, json={"topic": "x"}), 403, "forbidden")
    assert_error(
        await api.call("PATCH", path, moderator_token, json={"topic": "x", "archived": True}),
        403,
        "forbidden",
    )
    assert_error(
        await api.call("PATCH", path, owner_token, json={"topic": "x" * 1001}), 400, "bad_request"
    )
    status, body = await api.call("GET", path, member_token)
    assert body["room"]["topic"] == "more plans" and body["room"]["last_seq"] == last + 2
    updates = [f for f in await barrier(member_ws) if f["type"] == "update"]
    assert [(u["kind"], u["topic"], u["from"], u["seq"]) for u in updates] == [
        ("topic", "plans", owner, last + 1),
        ("topic", "more plans", moderator, last + 2),
    ]
    assert "target" not in updates[0]
    # The same topic again changes nothing; topics never appear in history.
    assert (await api.call("PATCH", path, owner_token, json={"topic": "more plans"}))[0] == 200
    status, body = await api.call("GET", path, member_token)
    assert body["room"]["last_seq"] == last + 2
    assert [m["seq"] for m in (await history(api, owner_token, room))["messages"]] == [last]
    # Archived, the room is read-only; unarchiving and setting a topic at once works.
    assert (await api.call("PATCH", path, owner_token, json={"archived": True}))[0] == 200
    assert_error(await api.call("PATCH", path, owner_token, json={"topic": "y"}), 403, "forbidden")
    both = {"archived": False, "topic": "back"}
    status, body = await api.call("PATCH", path, owner_token, json=both)
    assert status == 200 and body["room"]["topic"] == "back" and not body["room"]["archived"]


def _bytes(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


async def storage_holds(server: ServerProcess, room: str, text: str) -> bool:
    """Whether the node's storage holds `text` anywhere: the SQLite files' bytes, or every
    row of the room's log and reactions in PostgreSQL, as text."""
    args = server.extra_args
    if "--database" not in args:
        files = [server.data / name for name in ("hubbub.db", "hubbub.db-wal")]
        return any(text.encode() in data for data in map(_bytes, files))
    conn = await asyncpg.connect(asyncpg_dsn(args[args.index("--database") + 1]))
    try:
        found = 0
        for table in ("messages", "reactions"):
            found += await conn.fetchval(
                f"SELECT count(*) FROM {table} t WHERE room = $1 AND t::text LIKE $2",
                room,
                f"%{text}%",
            )
        return found > 0
    finally:
        await conn.close()


@SQL_ENGINES
async def test_a_delete_removes_the_text_its_versions_and_its_reactions_from_storage(
    api: Any, connect: Any, shared_server: ServerProcess
) -> None:
    _, owner_token = await user(api)
    room = await api.room(owner_token)
    o = await connect(owner_token)
    await join(o, room)
    secret, edited, key = uid("secretbody"), uid("secretedit"), f":{uid('secretkey')}:"
    target = (await send_msg(o, room, secret))["seq"]
    await acked(o, {"type": "edit", "room": room, "target": target, "body": edited})
    await acked(o, {"type": "react", "room": room, "target": target, "key": key})
    await acked(o, {"type": "unreact", "room": room, "target": target, "key": key})
    await acked(o, {"type": "react", "room": room, "target": target, "key": key})
    kept = await send_msg(o, room, uid("keptbody"))
    assert await storage_holds(shared_server, room, secret)
    assert await storage_holds(shared_server, room, kept["id"])

    await acked(o, {"type": "delete", "room": room, "target": target})
    for text in (secret, edited, key):
        assert not await storage_holds(shared_server, room, text), text
    (tombstone, other) = (await history(api, owner_token, room))["messages"]
    assert tombstone["deleted"] is True and "reactions" not in tombstone
    assert other["seq"] == kept["seq"]


@SQL_ENGINES
async def test_moderators_deletes_are_audited_without_the_text(
    api: Any, connect: Any, shared_server: ServerProcess
) -> None:
    _, owner_token = await user(api)
    room = await api.room(owner_token)
    o = await connect(owner_token)
    await join(o, room)
    author, _, a = await joined(api, connect, room)
    body = uid("auditedbody")
    target = (await send_msg(a, room, body))["seq"]
    own = (await send_msg(a, room, "mine"))["seq"]
    await acked(a, {"type": "delete", "room": room, "target": own})  # one's own: not audited
    await acked(o, {"type": "delete", "room": room, "target": target})
    events = [
        e
        for e in shared_server.audit_events()
        if e["event"] == "message_deleted" and e["room"] == room
    ]
    assert len(events) == 1, events
    assert (events[0]["target"], events[0]["seq"], events[0]["outcome"]) == (author, target, "ok")
    assert body not in shared_server.log()


@pytest.mark.parametrize("shared_server", ["redis"], indirect=True)
async def test_the_redis_engine_refuses_every_update_and_changes_nothing(
    api: Any, connect: Any, assert_error: Any
) -> None:
    _, owner_token = await user(api)
    room = await api.room(owner_token, topic="kept")
    o = await connect(owner_token)
    await join(o, room)
    target = (await send_msg(o, room, "x"))["seq"]
    for frame in (
        {"type": "edit", "target": target, "body": "y"},
        {"type": "delete", "target": target},
        {"type": "react", "target": target, "key": "a"},
        {"type": "unreact", "target": target, "key": "a"},
        {"type": "send", "body": "y", "reply_to": target},
        {"type": "send", "body": "y", "thread": target},
    ):
        error = await expect_error(o, {**frame, "room": room, "id": uid()}, "bad_request")
        assert error["message"] == NO_UPDATES
    path = f"/api/v1/rooms/{room}"
    for method, url, body in (
        ("PATCH", path, {"topic": "changed"}),
        ("GET", f"{path}/messages?thread={target}", None),
        ("GET", f"{path}/messages/{target}/edits", None),
    ):
        error = assert_error(
            await api.call(method, url, owner_token, json=body), 400, "bad_request"
        )
        assert error["message"] == NO_UPDATES
    _, body = await api.call("GET", path, owner_token)
    assert body["room"]["topic"] == "kept" and body["room"]["last_seq"] == target
    assert (await send_msg(o, room, "still fine"))["seq"] == target + 1
    # A body that would also unarchive changes nothing either.
    assert (await api.call("PATCH", path, owner_token, json={"archived": True}))[0] == 200
    both = {"archived": False, "topic": "changed"}
    assert_error(await api.call("PATCH", path, owner_token, json=both), 400, "bad_request")
    _, body = await api.call("GET", path, owner_token)
    assert body["room"]["archived"] is True and body["room"]["topic"] == "kept"
