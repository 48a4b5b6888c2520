"""Every row of the client -> server table, with `ref` echoed on each reply."""

from __future__ import annotations

import pytest
from support.wsutil import (
    assert_usable,
    barrier,
    join,
    messages,
    now_ms,
    recv_until,
    request,
    send_and_see,
    send_msg,
    uid,
    user,
)

MESSAGE_KEYS = {"type", "room", "seq", "id", "from", "body", "ts"}


def assert_ts(ts: object) -> None:
    assert isinstance(ts, int) and not isinstance(ts, bool), ts
    assert abs(ts - now_ms()) < 60_000, ts  # Unix milliseconds, assigned just now


# --- ref ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    ["1", "x" * 64, 'ref with spaces / and "quotes" and ✓', '{"type":"not-a-frame"}'],
    ids=["short", "64-chars", "any-text", "json-looking"],
)
async def test_ref_is_echoed_verbatim_on_pong(api, connect, ref):
    _, token = await user(api)
    ws = await connect(token)
    await ws.send({"type": "ping", "ref": ref})
    pong = await ws.recv()
    assert pong == {"type": "pong", "ref": ref}


async def test_reply_without_ref_has_no_ref(api, connect):
    _, token = await user(api)
    ws = await connect(token)
    await ws.send({"type": "ping"})
    assert await ws.recv() == {"type": "pong"}


async def test_every_reply_carries_the_ref_of_its_frame(api, connect):
    _, token = await user(api)
    room = await api.room(token)
    ws = await connect(token)
    frames = [
        {"type": "join", "room": room, "ref": "j"},
        {"type": "send", "room": room, "id": "m1", "body": "hi", "ref": "s"},
        {"type": "history", "room": room, "ref": "h"},
        {"type": "ping", "ref": "p"},
        {"type": "leave", "room": room, "ref": "l"},
    ]
    expected = {"j": "joined", "s": "ack", "h": "history", "p": "pong", "l": "left"}
    for frame in frames:
        await ws.send(frame)
    got: dict[str, str] = {}
    while len(got) < len(expected):
        frame, _ = await recv_until(ws, lambda f: "ref" in f)
        got[frame["ref"]] = frame["type"]
    assert got == expected


# --- join --------------------------------------------------------------------------------------


async def test_join_answers_joined_with_last_seq_presence_and_recovered(api, connect):
    name, token = await user(api)
    room = await api.room(token)
    ws = await connect(token)
    joined = await request(ws, {"type": "join", "room": room, "ref": "j1"})
    assert joined["type"] == "joined", joined
    assert joined["room"] == room
    assert joined["ref"] == "j1"
    assert joined["seq"] == 0  # nothing sent yet
    assert joined["recovered"] is True  # no `since`: nothing to recover
    assert isinstance(joined["presence"], list)
    assert name in joined["presence"]
    assert all(isinstance(u, str) for u in joined["presence"])


async def test_joined_seq_is_the_rooms_last_seq(api, connect):
    _, token = await user(api)
    room = await api.room(token)
    ws = await connect(token)
    await join(ws, room)
    for i in range(3):
        await send_msg(ws, room, f"m{i}")
    other = await connect(token)
    joined = await join(other, room)
    assert joined["seq"] == 3
    status, body = await api.call("GET", f"/api/v1/rooms/{room}", token)
    assert status == 200 and body["room"]["last_seq"] == 3, body


async def test_joined_presence_lists_the_users_online_in_the_room(api, connect):
    alice, ta = await user(api)
    bob, tb = await user(api)
    carol, _ = await user(api)
    room = await api.room(ta)
    a = await connect(ta)
    await join(a, room)
    b = await connect(tb)
    joined = await join(b, room)
    assert set(joined["presence"]) == {alice, bob}
    assert carol not in joined["presence"]


async def test_join_of_a_public_room_makes_the_user_a_member(api, connect):
    _, to = await user(api)
    bob, tb = await user(api)
    room = await api.room(to)
    ws = await connect(tb)
    await join(ws, room)
    status, body = await api.call("GET", f"/api/v1/rooms/{room}", to)
    assert status == 200, body
    assert bob in body["room"]["members"]
    status, me = await api.call("GET", "/api/v1/me", tb)
    assert room in [r["name"] for r in me["rooms"]]


async def test_join_of_a_private_room_works_for_an_invited_member(api, connect):
    _, to = await user(api)
    bob, tb = await user(api)
    room = await api.room(to, private=True)
    status, _ = await api.call("PUT", f"/api/v1/rooms/{room}/members/{bob}", to)
    assert status == 204
    ws = await connect(tb)
    joined = await join(ws, room)
    assert joined["room"] == room


async def test_joining_twice_answers_joined_again_and_does_not_duplicate_deliveries(api, connect):
    _, token = await user(api)
    room = await api.room(token)
    ws = await connect(token)
    writer = await connect(token)
    await join(writer, room)
    await join(ws, room)
    again = await join(ws, room)
    assert again["room"] == room and again["seq"] == 0
    ack = await send_msg(writer, room, "once")
    second = await send_msg(writer, room, "twice")
    got = await messages(ws, room, 2)
    assert [m["seq"] for m in got] == [ack["seq"], second["seq"]]
    assert all(f.get("type") != "message" for f in await barrier(ws))


# --- leave -------------------------------------------------------------------------------------


async def test_leave_answers_left_and_the_connection_stops_receiving(api, connect):
    _, ta = await user(api)
    _, tb = await user(api)
    room = await api.room(ta)
    a = await connect(ta)
    b = await connect(tb)
    await join(a, room)
    await join(b, room)
    left = await request(b, {"type": "leave", "room": room, "ref": "bye"})
    assert left == {"type": "left", "room": room, "ref": "bye"}
    # a's message reaches a (so the fan-out happened) but no longer b.
    await send_and_see(a, room, "after leave")
    seen = await barrier(b)
    assert [f for f in seen if f["type"] == "message"] == []


async def test_leave_keeps_the_membership(api, connect):
    _, to = await user(api)
    bob, tb = await user(api)
    room = await api.room(to)
    ws = await connect(tb)
    await join(ws, room)
    await request(ws, {"type": "leave", "room": room})
    status, body = await api.call("GET", f"/api/v1/rooms/{room}", to)
    assert status == 200 and bob in body["room"]["members"], body


async def test_leave_of_a_room_not_joined_answers_left(api, connect):
    _, token = await user(api)
    room = await api.room(token)
    ws = await connect(token)
    left = await request(ws, {"type": "leave", "room": room, "ref": "l0"})
    assert left == {"type": "left", "room": room, "ref": "l0"}


async def test_send_after_leave_is_not_joined(api, connect):
    _, token = await user(api)
    room = await api.room(token)
    ws = await connect(token)
    await join(ws, room)
    await request(ws, {"type": "leave", "room": room})
    reply = await request(ws, {"type": "send", "room": room, "id": uid(), "body": "x"})
    assert reply["type"] == "error" and reply["code"] == "not_joined", reply


# --- send --------------------------------------------------------------------------------------


async def test_send_answers_ack_with_room_id_seq_ts_and_ref(api, connect):
    _, token = await user(api)
    room = await api.room(token)
    ws = await connect(token)
    await join(ws, room)
    ack = await request(
        ws, {"type": "send", "room": room, "id": "hello-1", "body": "hi", "ref": "s1"}
    )
    assert set(ack) == {"type", "room", "id", "seq", "ts", "ref"}, ack
    assert ack["type"] == "ack"
    assert ack["room"] == room
    assert ack["id"] == "hello-1"
    assert ack["seq"] == 1
    assert ack["ref"] == "s1"
    assert_ts(ack["ts"])


async def test_send_delivers_message_to_every_joined_connection_including_the_sender(api, connect):
    alice, ta = await user(api)
    _, tb = await user(api)
    room = await api.room(ta)
    a1 = await connect(ta)
    a2 = await connect(ta)
    b = await connect(tb)
    outsider = await connect(tb)  # same user as b, but not joined on this connection
    for ws in (a1, a2, b):
        await join(ws, room)
    ack, own = await send_and_see(a1, room, "hello everyone", "greet-1")
    expected = {
        "type": "message",
        "room": room,
        "seq": ack["seq"],
        "id": "greet-1",
        "from": alice,
        "body": "hello everyone",
        "ts": ack["ts"],
    }
    assert own == expected
    for ws in (a2, b):
        (got,) = await messages(ws, room, 1)
        assert got == expected
    assert all(f["type"] != "message" for f in await barrier(outsider))


async def test_seq_counts_up_per_room(api, connect):
    _, token = await user(api)
    r1 = await api.room(token)
    r2 = await api.room(token)
    ws = await connect(token)
    await join(ws, r1)
    await join(ws, r2)
    assert [(await send_msg(ws, r1))["seq"] for _ in range(3)] == [1, 2, 3]
    assert [(await send_msg(ws, r2))["seq"] for _ in range(2)] == [1, 2]
    assert (await send_msg(ws, r1))["seq"] == 4


async def test_send_accepts_the_full_id_alphabet(api, connect):
    _, token = await user(api)
    room = await api.room(token)
    ws = await connect(token)
    await join(ws, room)
    for msg_id in ["a", "AZaz09_.:-", "x" * 64, "2024-01-01T00:00:00.000:abc"]:
        ack = await send_msg(ws, room, "id check", msg_id)
        assert ack["id"] == msg_id


async def test_send_keeps_any_text_verbatim(api, connect):
    _, token = await user(api)
    room = await api.room(token)
    ws = await connect(token)
    await join(ws, room)
    body = 'line 1\nline 2\t"quoted" <b>&amp;</b> \\ ✓ 😀 e\u0301 \u202e'
    _, msg = await send_and_see(ws, room, body)
    assert msg["body"] == body


async def test_unknown_fields_in_a_frame_are_ignored(api, connect):
    _, token = await user(api)
    room = await api.room(token)
    ws = await connect(token)
    await join(ws, room)
    reply = await request(
        ws, {"type": "send", "room": room, "id": "f1", "body": "x", "future": {"a": [1]}}
    )
    assert reply["type"] == "ack", reply
    reply = await request(ws, {"type": "ping", "extra": True})
    assert reply["type"] == "pong"


# --- history -----------------------------------------------------------------------------------


async def test_history_frame_pages_like_the_http_call(api, connect):
    name, token = await user(api)
    room = await api.room(token)
    ws = await connect(token)
    await join(ws, room)
    acks = [await send_msg(ws, room, f"body {i}", f"h{i}") for i in range(1, 6)]
    assert [a["seq"] for a in acks] == [1, 2, 3, 4, 5]

    async def page(**params):
        reply = await request(ws, {"type": "history", "room": room, **params})
        assert reply["type"] == "history", reply
        assert reply["room"] == room
        return [m["seq"] for m in reply["messages"]], reply["more"]

    assert await page() == ([1, 2, 3, 4, 5], False)
    assert await page(limit=2) == ([4, 5], True)
    assert await page(before=4, limit=2) == ([2, 3], True)
    assert await page(before=2) == ([1], False)
    assert await page(after=2, limit=2) == ([3, 4], True)
    assert await page(after=3) == ([4, 5], False)
    assert await page(after=5) == ([], False)
    assert await page(limit=1) == ([5], True)
    assert await page(limit=200) == ([1, 2, 3, 4, 5], False)

    reply = await request(
        ws, {"type": "history", "room": room, "after": 0, "limit": 1, "ref": "hx"}
    )
    assert reply["ref"] == "hx"
    (first,) = reply["messages"]
    assert first == {
        "room": room,
        "seq": 1,
        "id": "h1",
        "from": name,
        "body": "body 1",
        "ts": acks[0]["ts"],
    }


async def test_history_frame_matches_the_http_history(api, connect):
    _, token = await user(api)
    room = await api.room(token)
    ws = await connect(token)
    await join(ws, room)
    for i in range(4):
        await send_msg(ws, room, f"b{i}")
    reply = await request(ws, {"type": "history", "room": room, "limit": 3})
    status, body = await api.call("GET", f"/api/v1/rooms/{room}/messages?limit=3", token)
    assert status == 200, body
    assert reply["messages"] == body["messages"]
    assert reply["more"] == body["more"]


async def test_history_needs_membership_not_a_join_of_this_connection(api, connect):
    _, token = await user(api)
    room = await api.room(token)
    writer = await connect(token)
    await join(writer, room)
    await send_msg(writer, room, "kept")
    reader = await connect(token)  # a member, never joined on this connection
    reply = await request(reader, {"type": "history", "room": room})
    assert reply["type"] == "history", reply
    assert [m["body"] for m in reply["messages"]] == ["kept"]


# --- typing ------------------------------------------------------------------------------------


async def test_typing_reaches_others_but_not_the_typers_own_connections(api, connect):
    alice, ta = await user(api)
    _, tb = await user(api)
    room = await api.room(ta)
    a1 = await connect(ta)
    a2 = await connect(ta)
    b = await connect(tb)
    for ws in (a1, a2, b):
        await join(ws, room)
    await a1.send({"type": "typing", "room": room, "ref": "t1"})
    typing, _ = await recv_until(b, lambda f: f["type"] == "typing")
    assert typing == {"type": "typing", "room": room, "user": alice}
    # A message sent after the typing frame is a barrier on every joined connection: whatever
    # typing event a1 or a2 would get comes before it. `typing` itself has no reply.
    await a1.send({"type": "send", "room": room, "id": "after-typing", "body": "x", "ref": "s1"})
    for ws in (a1, a2):
        _, before = await recv_until(
            ws, lambda f: f["type"] == "message" and f["id"] == "after-typing"
        )
        assert [f for f in before if f["type"] == "typing" or f.get("ref") == "t1"] == []


async def test_typing_is_not_stored(api, connect):
    _, token = await user(api)
    room = await api.room(token)
    ws = await connect(token)
    await join(ws, room)
    await ws.send({"type": "typing", "room": room})
    ack = await send_msg(ws, room, "real")
    assert ack["seq"] == 1
    reply = await request(ws, {"type": "history", "room": room})
    assert [m["body"] for m in reply["messages"]] == ["real"]


# --- ping --------------------------------------------------------------------------------------


async def test_ping_answers_pong(api, connect):
    _, token = await user(api)
    ws = await connect(token)
    await ws.send({"type": "ping", "ref": "p1"})
    assert await ws.recv() == {"type": "pong", "ref": "p1"}
    await assert_usable(ws)
