"""Every error code a WebSocket client can provoke, and that the connection survives each."""

from __future__ import annotations

import asyncio
import json

import pytest
from support.wsutil import (
    api_at,
    assert_usable,
    expect_error,
    join,
    messages,
    module_server,
    recv_until,
    request,
    send_msg,
    uid,
    user,
)

ROOM = "{room}"  # placeholder: replaced by a room the user created and joined


def fill(frame: object, room: str) -> object:
    if isinstance(frame, dict):
        return {k: fill(v, room) for k, v in frame.items()}
    return room if frame == ROOM else frame


async def joined_user(api, connect):
    """A fresh user with a public room joined on a fresh connection: (name, token, room, ws)."""
    name, token = await user(api)
    room = await api.room(token)
    ws = await connect(token)
    await join(ws, room)
    return name, token, room, ws


async def assert_still_works(ws, room: str) -> None:
    await assert_usable(ws)
    ack = await send_msg(ws, room, "after the error")
    assert ack["room"] == room


# --- bad_request ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["not json", "{", '{"type": "ping",}', "[]", '[{"type": "ping"}]', '"ping"', "42", "null", ""],
    ids=[
        "text",
        "truncated",
        "trailing-comma",
        "empty-array",
        "array",
        "string",
        "number",
        "null",
        "empty",
    ],
)
async def test_frame_that_is_not_a_json_object_is_bad_request(api, connect, raw):
    _, _, room, ws = await joined_user(api, connect)
    await ws.ws.send_str(raw)
    frame = await ws.recv()
    assert frame["type"] == "error", frame
    assert frame["code"] == "bad_request", frame
    assert "ref" not in frame
    await assert_still_works(ws, room)


BAD_FRAMES = {
    "no-type": {"room": ROOM},
    "type-not-string": {"type": 5},
    "type-null": {"type": None},
    "unknown-type": {"type": "shout", "room": ROOM},
    "type-wrong-case": {"type": "PING"},
    "join-no-room": {"type": "join"},
    "join-room-number": {"type": "join", "room": 5},
    "join-room-null": {"type": "join", "room": None},
    "join-room-upper": {"type": "join", "room": "General"},
    "join-room-leading-dash": {"type": "join", "room": "-general"},
    "join-room-leading-underscore": {"type": "join", "room": "_general"},
    "join-room-empty": {"type": "join", "room": ""},
    "join-room-65": {"type": "join", "room": "r" * 65},
    "join-room-space": {"type": "join", "room": "two words"},
    "join-room-slash": {"type": "join", "room": "a/b"},
    "join-room-trailing-newline": {"type": "join", "room": "general\n"},
    "join-since-string": {"type": "join", "room": ROOM, "since": "3"},
    "join-since-bool": {"type": "join", "room": ROOM, "since": True},
    "join-since-float": {"type": "join", "room": ROOM, "since": 1.5},
    "leave-no-room": {"type": "leave"},
    "leave-room-list": {"type": "leave", "room": [ROOM]},
    "send-no-id": {"type": "send", "room": ROOM, "body": "x"},
    "send-no-body": {"type": "send", "room": ROOM, "id": "a1"},
    "send-no-room": {"type": "send", "id": "a1", "body": "x"},
    "send-empty-body": {"type": "send", "room": ROOM, "id": "a1", "body": ""},
    "send-body-number": {"type": "send", "room": ROOM, "id": "a1", "body": 5},
    "send-body-null": {"type": "send", "room": ROOM, "id": "a1", "body": None},
    "send-body-object": {"type": "send", "room": ROOM, "id": "a1", "body": {"text": "x"}},
    "send-id-empty": {"type": "send", "room": ROOM, "id": "", "body": "x"},
    "send-id-65": {"type": "send", "room": ROOM, "id": "i" * 65, "body": "x"},
    "send-id-space": {"type": "send", "room": ROOM, "id": "a b", "body": "x"},
    "send-id-slash": {"type": "send", "room": ROOM, "id": "a/b", "body": "x"},
    "send-id-plus": {"type": "send", "room": ROOM, "id": "a+b", "body": "x"},
    "send-id-unicode": {"type": "send", "room": ROOM, "id": "caf\u00e9", "body": "x"},
    "send-id-newline": {"type": "send", "room": ROOM, "id": "a1\n", "body": "x"},
    "send-id-number": {"type": "send", "room": ROOM, "id": 17, "body": "x"},
    "send-room-bad-name": {"type": "send", "room": "Bad Room", "id": "a1", "body": "x"},
    "history-no-room": {"type": "history"},
    "history-limit-0": {"type": "history", "room": ROOM, "limit": 0},
    "history-limit-201": {"type": "history", "room": ROOM, "limit": 201},
    "history-limit-negative": {"type": "history", "room": ROOM, "limit": -1},
    "history-limit-string": {"type": "history", "room": ROOM, "limit": "10"},
    "history-before-string": {"type": "history", "room": ROOM, "before": "x"},
    "history-after-string": {"type": "history", "room": ROOM, "after": "1"},
    "history-room-bad-name": {"type": "history", "room": "UPPER"},
    "typing-no-room": {"type": "typing"},
    "typing-room-number": {"type": "typing", "room": 1},
    "ping-ref-number": {"type": "ping", "ref": 5},
}


@pytest.mark.parametrize("frame", list(BAD_FRAMES.values()), ids=list(BAD_FRAMES))
async def test_ill_formed_frame_is_bad_request_with_ref_and_the_connection_stays_usable(
    api, connect, frame
):
    _, _, room, ws = await joined_user(api, connect)
    frame = fill(frame, room)
    ref = uid("bad")
    if "ref" not in frame:
        frame["ref"] = ref
    await ws.send(frame)
    reply = await ws.recv()
    assert reply["type"] == "error", reply
    assert reply["code"] == "bad_request", reply
    assert isinstance(reply["message"], str), reply
    if frame["ref"] == ref:  # a valid ref is echoed even on an invalid frame
        assert reply["ref"] == ref, reply
    await assert_still_works(ws, room)


async def test_ref_longer_than_64_characters_is_bad_request(api, connect):
    _, _, room, ws = await joined_user(api, connect)
    await ws.send({"type": "ping", "ref": "r" * 65})
    reply = await ws.recv()
    assert reply["type"] == "error" and reply["code"] == "bad_request", reply
    await ws.send({"type": "send", "room": room, "id": uid(), "body": "x", "ref": "q" * 65})
    reply = await ws.recv()
    assert reply["type"] == "error" and reply["code"] == "bad_request", reply
    await assert_still_works(ws, room)


async def test_rejected_send_creates_no_message(api, connect):
    _, _, room, ws = await joined_user(api, connect)
    await expect_error(ws, {"type": "send", "room": room, "id": "a b", "body": "x"}, "bad_request")
    await expect_error(ws, {"type": "send", "room": room, "id": "ok", "body": ""}, "bad_request")
    assert (await send_msg(ws, room))["seq"] == 1


async def test_history_limit_edges_1_and_200_are_accepted(api, connect):
    _, _, room, ws = await joined_user(api, connect)
    for limit in (1, 200):
        reply = await request(ws, {"type": "history", "room": room, "limit": limit})
        assert reply["type"] == "history", reply


async def test_room_name_edges_are_accepted(api, connect):
    _, token = await user(api)
    ws = await connect(token)
    longest = (uid("r") + "-" * 64)[:64]
    for name in (longest, uid("0") + "_x-y"):
        await api.room(token, name=name)
        joined = await join(ws, name)
        assert joined["room"] == name


# --- not_found -----------------------------------------------------------------------------------


async def test_join_of_a_missing_room_is_not_found(api, connect):
    _, _, room, ws = await joined_user(api, connect)
    reply = await expect_error(ws, {"type": "join", "room": uid("nosuch")}, "not_found")
    assert reply["ref"]
    await assert_still_works(ws, room)


async def test_private_room_of_others_answers_exactly_like_a_missing_room(api, connect):
    _, owner_token = await user(api)
    secret = await api.room(owner_token, private=True)
    missing = uid("nosuch")
    _, _, room, ws = await joined_user(api, connect)
    for kind in ("join", "history"):
        hidden = await expect_error(ws, {"type": kind, "room": secret}, "not_found")
        absent = await expect_error(ws, {"type": kind, "room": missing}, "not_found")
        # Same answer: the message must not reveal that the private room exists.
        assert hidden["message"].replace(secret, "R") == absent["message"].replace(missing, "R")
    for kind in ("send", "typing"):
        extra = {"id": uid(), "body": "x"} if kind == "send" else {}
        hidden = await request(ws, {"type": kind, "room": secret, **extra})
        absent = await request(ws, {"type": kind, "room": missing, **extra})
        assert hidden["type"] == absent["type"] == "error", (hidden, absent)
        assert hidden["code"] == absent["code"], (hidden, absent)
        assert hidden["code"] in ("not_found", "not_joined"), hidden
    await assert_still_works(ws, room)


async def test_private_room_history_is_not_found_for_a_non_member(api, connect):
    _, owner_token = await user(api)
    secret = await api.room(owner_token, private=True)
    owner = await connect(owner_token)
    await join(owner, secret)
    await send_msg(owner, secret, "top secret")
    _, token = await user(api)
    ws = await connect(token)
    await expect_error(ws, {"type": "history", "room": secret}, "not_found")
    await assert_usable(ws)


# --- forbidden -----------------------------------------------------------------------------------


async def test_banned_user_is_forbidden_in_a_public_room(api, connect):
    _, owner_token = await user(api)
    bob, bob_token = await user(api)
    room = await api.room(owner_token)
    other_room = await api.room(bob_token)
    assert (await api.call("PUT", f"/api/v1/rooms/{room}/members/{bob}", bob_token))[0] == 204
    assert (await api.call("PUT", f"/api/v1/rooms/{room}/bans/{bob}", owner_token))[0] == 204
    ws = await connect(bob_token)
    await join(ws, other_room)
    await expect_error(ws, {"type": "join", "room": room}, "forbidden")
    await expect_error(ws, {"type": "history", "room": room}, "forbidden")
    await assert_still_works(ws, other_room)


# --- not_joined ----------------------------------------------------------------------------------


async def test_send_and_typing_to_a_room_not_joined_on_this_connection_are_not_joined(api, connect):
    _, token, joined_room, ws = await joined_user(api, connect)
    member_room = await api.room(token)  # a member (the owner), but not joined here
    reply = await expect_error(
        ws, {"type": "send", "room": member_room, "id": uid(), "body": "x"}, "not_joined"
    )
    assert reply["ref"]
    await expect_error(ws, {"type": "typing", "room": member_room}, "not_joined")
    await assert_still_works(ws, joined_room)
    reply = await request(ws, {"type": "history", "room": member_room})
    assert reply["messages"] == []  # not_joined created nothing


async def test_send_to_a_room_joined_only_by_another_connection_is_not_joined(api, connect):
    _, token, room, first = await joined_user(api, connect)
    second = await connect(token)
    await expect_error(
        second, {"type": "send", "room": room, "id": uid(), "body": "x"}, "not_joined"
    )
    await assert_usable(second)
    await assert_usable(first)


# --- too_large -----------------------------------------------------------------------------------


async def test_body_of_4000_characters_is_accepted_and_4001_is_too_large(api, connect):
    _, _, room, ws = await joined_user(api, connect)
    ack = await send_msg(ws, room, "a" * 4000)
    reply = await expect_error(
        ws, {"type": "send", "room": room, "id": uid(), "body": "a" * 4001}, "too_large"
    )
    assert reply["ref"]
    await assert_still_works(ws, room)
    reply = await request(ws, {"type": "history", "room": room, "limit": 200})
    assert [len(m["body"]) for m in reply["messages"]] == [4000, len("after the error")]
    assert reply["messages"][0]["seq"] == ack["seq"]


@pytest.mark.parametrize("ascii_json", [True, False], ids=["escaped", "raw-utf8"])
async def test_body_length_counts_code_points_not_bytes_or_utf16_units(api, connect, ascii_json):
    _, _, room, ws = await joined_user(api, connect)

    async def send(body: str) -> dict:
        ref = uid("ref")
        frame = {"type": "send", "room": room, "id": uid(), "body": body, "ref": ref}
        # escaped: "\\ud83d\\ude00" surrogate pairs in JSON; raw: 4-byte UTF-8 sequences
        await ws.ws.send_str(json.dumps(frame, ensure_ascii=ascii_json))
        reply, _ = await recv_until(ws, lambda f: f.get("ref") == ref)
        return reply

    emoji = "\U0001f600"  # 1 code point, 4 UTF-8 bytes, 2 UTF-16 units
    reply = await send(emoji * 4000)
    assert reply["type"] == "ack", reply
    reply = await send("é" * 4000)  # 2 UTF-8 bytes each
    assert reply["type"] == "ack", reply
    reply = await send(emoji * 4001)
    assert reply["type"] == "error" and reply["code"] == "too_large", reply
    reply = await send("é" * 4001)
    assert reply["type"] == "error" and reply["code"] == "too_large", reply
    history = await request(ws, {"type": "history", "room": room})
    assert [m["body"] for m in history["messages"]] == [emoji * 4000, "é" * 4000]
    await assert_still_works(ws, room)


# --- conflict and idempotency --------------------------------------------------------------------


async def test_same_id_with_another_body_is_conflict_and_changes_nothing(api, connect):
    _, _, room, ws = await joined_user(api, connect)
    ack = await send_msg(ws, room, "original", "dup-1")
    reply = await expect_error(
        ws, {"type": "send", "room": room, "id": "dup-1", "body": "changed"}, "conflict"
    )
    assert reply["ref"]
    history = await request(ws, {"type": "history", "room": room})
    assert [(m["id"], m["body"], m["seq"]) for m in history["messages"]] == [
        ("dup-1", "original", ack["seq"])
    ]
    await assert_still_works(ws, room)


async def test_same_id_same_body_returns_the_original_ack_and_delivers_nothing(api, connect):
    _, _, room, ws = await joined_user(api, connect)
    _, tb = await user(api)
    watcher = await connect(tb)
    await join(watcher, room)
    first = await send_msg(ws, room, "once", "idem-1")
    later = await send_msg(ws, room, "something else")  # the room moves on
    again = await request(ws, {"type": "send", "room": room, "id": "idem-1", "body": "once"})
    assert again["type"] == "ack", again
    assert {k: again[k] for k in ("room", "id", "seq", "ts")} == {
        k: first[k] for k in ("room", "id", "seq", "ts")
    }
    assert again["ref"] != first["ref"]  # the ref is the resend's own
    nxt = await send_msg(ws, room, "next")
    assert nxt["seq"] == later["seq"] + 1
    got = await messages(watcher, room, 3)
    assert [(m["seq"], m["id"]) for m in got] == [
        (first["seq"], "idem-1"),
        (later["seq"], later["id"]),
        (nxt["seq"], nxt["id"]),
    ]


async def test_same_id_is_scoped_per_sender_and_per_room(api, connect):
    _, ta, room, a = await joined_user(api, connect)
    _, tb = await user(api)
    b = await connect(tb)
    await join(b, room)
    other_room = await api.room(ta)
    await join(a, other_room)
    first = await send_msg(a, room, "from a", "shared-id")
    from_b = await send_msg(b, room, "from b", "shared-id")
    elsewhere = await send_msg(a, other_room, "from a", "shared-id")
    assert from_b["seq"] == first["seq"] + 1
    assert elsewhere["seq"] == 1


async def test_same_id_resent_from_another_connection_of_the_sender_is_idempotent(api, connect):
    _, token, room, first_ws = await joined_user(api, connect)
    second_ws = await connect(token)
    await join(second_ws, room)
    first = await send_msg(first_ws, room, "hi", "multi-conn")
    again = await send_msg(second_ws, room, "hi", "multi-conn")
    assert (again["seq"], again["ts"]) == (first["seq"], first["ts"])


# --- rate_limited --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory, shared_server):
    yield from module_server(tmp_path_factory, shared_server, env={"HUBBUB_RATE_LIMIT": "5"})


async def test_send_burst_of_10_is_accepted_then_rate_limited_with_retry_after(
    api, connect, limited_server
):
    remote = api_at(api, limited_server)
    _, token = await user(remote)
    room = await remote.room(token)
    ws = await connect(token, url=limited_server.ws_url)
    await join(ws, room)
    refs = [f"b{i}" for i in range(25)]
    for i, ref in enumerate(refs):  # pipelined: no waiting between frames
        await ws.send({"type": "send", "room": room, "id": f"burst-{i}", "body": "x", "ref": ref})
    replies = {}
    while len(replies) < len(refs):
        frame, _ = await recv_until(ws, lambda f: f.get("ref") in refs)
        replies[frame["ref"]] = frame
    # --rate-limit 5 allows bursts of 10: the first ten are accepted ...
    assert [replies[r]["type"] for r in refs[:10]] == ["ack"] * 10, replies
    # ... and some of the rest (sent within milliseconds) are refused.
    limited = [replies[r] for r in refs[10:] if replies[r]["type"] == "error"]
    assert limited, replies
    for err in limited:
        assert err["code"] == "rate_limited", err
        retry = err["retry_after"]
        assert isinstance(retry, int | float) and not isinstance(retry, bool), err
        assert 0 < retry <= 10, err
    # A refused send created nothing; the connection keeps working right away ...
    await assert_usable(ws)
    # ... and sending works again once retry_after has passed.
    await asyncio.sleep(limited[-1]["retry_after"])  # what the server told us to wait
    again = await send_msg(ws, room, "after the wait")
    acked = sum(1 for r in refs if replies[r]["type"] == "ack")
    assert again["seq"] == acked + 1


async def test_typing_shares_the_send_rate_limit(api, connect, limited_server):
    remote = api_at(api, limited_server)
    _, token = await user(remote)
    room = await remote.room(token)
    ws = await connect(token, url=limited_server.ws_url)
    await join(ws, room)
    for _ in range(15):
        await ws.send({"type": "typing", "room": room})
    reply = await request(ws, {"type": "send", "room": room, "id": uid(), "body": "x"})
    assert reply["type"] == "error" and reply["code"] == "rate_limited", reply
    assert reply["retry_after"] > 0
    await assert_usable(ws)


@pytest.mark.parametrize("kind", ["edit", "delete", "react", "unreact"])
async def test_updates_share_the_send_rate_limit(api, connect, limited_server, kind):
    remote = api_at(api, limited_server)
    _, token = await user(remote)
    room = await remote.room(token)
    ws = await connect(token, url=limited_server.ws_url)
    await join(ws, room)
    for i in range(15):  # every field any of the kinds needs (others are ignored)
        frame = {"type": kind, "room": room, "id": f"u{i}", "target": 1, "body": "x", "key": "k"}
        await ws.send(frame)
    reply = await request(ws, {"type": "send", "room": room, "id": uid(), "body": "x"})
    assert reply["type"] == "error" and reply["code"] == "rate_limited", reply
    await assert_usable(ws)


async def test_rate_limit_is_per_connection(api, connect, limited_server):
    remote = api_at(api, limited_server)
    _, token = await user(remote)
    room = await remote.room(token)
    busy = await connect(token, url=limited_server.ws_url)
    fresh = await connect(token, url=limited_server.ws_url)
    await join(busy, room)
    await join(fresh, room)
    for i in range(20):
        await busy.send({"type": "send", "room": room, "id": f"busy-{i}", "body": "x"})
    reply = await request(busy, {"type": "send", "room": room, "id": "busy-x", "body": "x"})
    assert reply["type"] == "error" and reply["code"] == "rate_limited", reply
    ack = await send_msg(fresh, room, "my own budget")
    assert ack["type"] == "ack"


async def test_all_frames_together_are_limited_to_200_per_second(api, connect):
    _, _, _, ws = await joined_user(api, connect)
    count = 280  # 200 allowed at once; under the 100 refusals that count as flooding
    for i in range(count):
        await ws.send({"type": "ping", "ref": f"p{i}"})
    kinds: dict[str, int] = {}
    for _ in range(count):
        frame, _ = await recv_until(ws, lambda f: str(f.get("ref", "")).startswith("p"))
        key = frame["type"] if frame["type"] == "pong" else frame["code"]
        kinds[key] = kinds.get(key, 0) + 1
    assert kinds.get("rate_limited", 0) > 0, kinds
    assert set(kinds) == {"pong", "rate_limited"}, kinds
    assert kinds["pong"] >= 200 - 5, kinds
    # Fewer than 100 refusals: not a flood, so the connection stays open.
    assert not ws.ws.closed
