"""Protocol v2, section 1, over the wire: `edit`, `delete`, `react`, `unreact` and `send`
with `reply_to`/`thread` on the SQLite and PostgreSQL engines (real nodes, real sockets).

Updates are entries of the room's log: each takes the next seq, is acked, reaches every
connection joined to the room as an `update` frame, replays with `join` + `since` in seq
order among the messages, and is idempotent by (room, sender, id). Bad input answers the
spec's code and takes no seq. Current state (history, the edits call, topics, redaction)
is in test_updates_state.py; the Redis engine's refusal there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from support.wsutil import (
    acked,
    barrier,
    expect_error,
    join,
    recv_until,
    request,
    send_msg,
    uid,
    user,
)

pytestmark = pytest.mark.parametrize("shared_server", ["sqlite", "postgres"], indirect=True)

Frame = dict[str, Any]


@dataclass
class Person:
    name: str
    token: str
    ws: Any


async def pair(api: Any, connect: Any) -> tuple[str, Person, Person]:
    """A public room with its owner and a member, each joined on a connection."""
    people = []
    for _ in range(2):
        name, token = await user(api)
        people.append(Person(name, token, await connect(token)))
    owner, bob = people
    room = await api.room(owner.token)
    for person in people:
        await join(person.ws, room)
    return room, owner, bob


async def next_seq(ws: Any, room: str) -> int:
    """The seq the room's next entry gets (a send, read back from its ack)."""
    return int((await acked(ws, {"type": "send", "room": room, "body": "probe"}))["seq"]) + 1


async def test_every_update_takes_the_next_seq_and_reaches_every_joined_connection(
    api: Any, connect: Any
) -> None:
    room, owner_, bob_ = await pair(api, connect)
    owner, o, bob, b = owner_.name, owner_.ws, bob_.name, bob_.ws
    # Connections that only watch (the senders' own read their acks): one of the owner's,
    # one of someone else's.
    watchers = [await connect(owner_.token), await connect((await user(api))[1])]
    for ws in watchers:
        await join(ws, room)
    sent = await send_msg(o, room, "hello wrld")
    target = sent["seq"]
    edit = await acked(o, {"type": "edit", "room": room, "target": target, "body": "hello world"})
    react = await acked(b, {"type": "react", "room": room, "target": target, "key": "👍"})
    unreact = await acked(b, {"type": "unreact", "room": room, "target": target, "key": "👍"})
    delete = await acked(o, {"type": "delete", "room": room, "target": target})
    assert [a["seq"] for a in (edit, react, unreact, delete)] == list(range(target + 1, target + 5))
    for a in (edit, react, unreact, delete):
        assert set(a) == {"type", "room", "id", "seq", "ts", "ref"}
    for ws in watchers:
        seen = [f for f in await barrier(ws) if f["type"] == "update"]
        assert seen == [
            {
                "type": "update",
                "room": room,
                "seq": edit["seq"],
                "kind": "edit",
                "from": owner,
                "ts": edit["ts"],
                "target": target,
                "body": "hello world",
            },
            {
                "type": "update",
                "room": room,
                "seq": react["seq"],
                "kind": "react",
                "from": bob,
                "ts": react["ts"],
                "target": target,
                "key": "👍",
            },
            {
                "type": "update",
                "room": room,
                "seq": unreact["seq"],
                "kind": "unreact",
                "from": bob,
                "ts": unreact["ts"],
                "target": target,
                "key": "👍",
            },
            {
                "type": "update",
                "room": room,
                "seq": delete["seq"],
                "kind": "delete",
                "from": owner,
                "ts": delete["ts"],
                "target": target,
                "by": owner,
            },
        ]


async def test_replies_and_thread_messages_carry_their_references(api: Any, connect: Any) -> None:
    room, owner_, bob_ = await pair(api, connect)
    o, b = owner_.ws, bob_.ws
    watcher = await connect(owner_.token)
    await join(watcher, room)
    root = await send_msg(o, room, "root")
    reply = await request(
        b, {"type": "send", "room": room, "id": uid(), "body": "re", "reply_to": root["seq"]}
    )
    threaded = await request(
        b, {"type": "send", "room": room, "id": uid(), "body": "in", "thread": root["seq"]}
    )
    both = await request(
        o,
        {
            "type": "send",
            "room": room,
            "id": uid(),
            "body": "both",
            "thread": root["seq"],
            "reply_to": threaded["seq"],
        },
    )
    assert [reply["type"], threaded["type"], both["type"]] == ["ack"] * 3
    frames = [f for f in await barrier(watcher) if f["type"] == "message"]
    plain = frames[0]
    assert plain["seq"] == root["seq"] and "reply_to" not in plain and "thread" not in plain
    assert frames[1]["reply_to"] == root["seq"] and "thread" not in frames[1]
    assert frames[2]["thread"] == root["seq"] and "reply_to" not in frames[2]
    assert (frames[3]["thread"], frames[3]["reply_to"]) == (root["seq"], threaded["seq"])


async def test_join_since_replays_updates_among_messages_in_seq_order(
    api: Any, connect: Any
) -> None:
    room, owner_, bob_ = await pair(api, connect)
    o, b = owner_.ws, bob_.ws
    first = await send_msg(o, room, "one")
    await acked(o, {"type": "edit", "room": room, "target": first["seq"], "body": "one!"})
    await acked(b, {"type": "react", "room": room, "target": first["seq"], "key": ":tada:"})
    await send_msg(b, room, "two")
    last = await acked(o, {"type": "delete", "room": room, "target": first["seq"]})
    again = await connect((await user(api))[1])
    joined = await join(again, room, since=first["seq"] - 1)
    assert joined["seq"] == last["seq"] and joined["recovered"] is True
    replay = [f for f in await barrier(again) if f["type"] in ("message", "update")]
    assert [f["seq"] for f in replay] == list(range(first["seq"], last["seq"] + 1))
    # Replays show each entry as sent, but a deleted message's text is gone: the message
    # says "deleted", its edit and its reaction too (no body, no key).
    kinds = [(f["type"], f.get("kind")) for f in replay]
    assert kinds == [
        ("message", None),
        ("update", "edit"),
        ("update", "react"),
        ("message", None),
        ("update", "delete"),
    ]
    assert replay[0]["deleted"] is True and "body" not in replay[0]
    assert replay[1]["deleted"] is True and "body" not in replay[1]
    assert replay[2]["deleted"] is True and "key" not in replay[2]
    assert replay[3]["body"] == "two"


async def test_a_repeated_update_answers_the_original_ack_and_another_content_conflicts(
    api: Any, connect: Any
) -> None:
    room, owner_, bob_ = await pair(api, connect)
    o, b = owner_.ws, bob_.ws
    target = (await send_msg(o, room, "text"))["seq"]
    edit = {"type": "edit", "room": room, "id": uid(), "target": target, "body": "new"}
    first = await acked(o, edit)
    again = await acked(o, edit)
    assert (again["seq"], again["ts"]) == (first["seq"], first["ts"])
    await expect_error(o, {**edit, "body": "other"}, "conflict")
    react = {"type": "react", "room": room, "id": uid(), "target": target, "key": "👀"}
    assert (await acked(b, react))["seq"] == (await acked(b, react))["seq"]
    # An id is one entry, whatever its kind: a send or a delete may not reuse it.
    await expect_error(
        b, {"type": "send", "room": room, "id": react["id"], "body": "x"}, "conflict"
    )
    await expect_error(
        b, {"type": "delete", "room": room, "id": react["id"], "target": target}, "conflict"
    )
    msg_id = uid()
    await send_msg(b, room, "plain", msg_id)
    await expect_error(
        b,
        {"type": "edit", "room": room, "id": msg_id, "target": target, "body": "plain"},
        "conflict",
    )
    await expect_error(
        b,
        {"type": "send", "room": room, "id": msg_id, "body": "plain", "reply_to": target},
        "conflict",
    )
    # Only the first of each was stored: the next entry follows them without a gap.
    assert await next_seq(o, room) == first["seq"] + 4
    delete = {"type": "delete", "room": room, "id": uid(), "target": target}
    deleted = await acked(o, delete)
    assert (await acked(o, delete))["seq"] == deleted["seq"]
    # The edit's text was redacted with its message; its repeat is still that edit.
    assert (await acked(o, edit))["seq"] == first["seq"]


async def test_one_connections_updates_and_sends_keep_their_frame_order(
    api: Any, connect: Any
) -> None:
    room, owner_, _ = await pair(api, connect)
    o = owner_.ws
    target = (await send_msg(o, room, "x"))["seq"]
    frames = []
    for i in range(10):
        frames.append({"type": "send", "room": room, "id": uid(), "body": f"s{i}"})
        frames.append(
            {"type": "react", "room": room, "id": uid(), "target": target, "key": f"k{i}"}
        )
    frames.append({"type": "delete", "room": room, "id": uid(), "target": target + 1})
    frames.append({"type": "send", "room": room, "id": uid(), "body": "after"})
    for i, frame in enumerate(frames):
        await o.send({**frame, "ref": f"r{i}"})
    acks: dict[str, int] = {}
    while len(acks) < len(frames):
        frame, _ = await recv_until(o, lambda f: f["type"] in ("ack", "error"))
        assert frame["type"] == "ack", frame
        acks[frame["ref"]] = frame["seq"]
    assert [acks[f"r{i}"] for i in range(len(frames))] == list(
        range(target + 1, target + 1 + len(frames))
    )


BAD_TYPES = [
    ("edit", {"target": "1", "body": "x"}),
    ("edit", {"target": 1, "body": 5}),
    ("edit", {"target": -1, "body": "x"}),
    ("edit", {"body": "x"}),
    ("edit", {"target": 1, "body": "   "}),
    ("edit", {"target": 1, "body": "a\u0007b"}),
    ("delete", {"target": 1.5}),
    ("delete", {"target": None}),
    ("react", {"target": 1, "key": 7}),
    ("react", {"target": 1, "key": ""}),
    ("react", {"target": 1, "key": "a b"}),
    ("react", {"target": 1, "key": "x\u200b"}),
    ("react", {"target": 1, "key": "x" * 33}),
    ("react", {"target": 1}),
    ("unreact", {"target": 1, "key": "\n"}),
    ("send", {"body": "x", "reply_to": "1"}),
    ("send", {"body": "x", "thread": -3}),
    ("send", {"body": "x", "thread": True}),
]


@pytest.mark.parametrize(("kind", "fields"), BAD_TYPES, ids=repr)
async def test_malformed_fields_are_bad_requests_and_take_no_seq(
    api: Any, connect: Any, kind: str, fields: Frame
) -> None:
    room, owner_, _ = await pair(api, connect)
    o = owner_.ws
    before = await next_seq(o, room)
    error = await expect_error(
        o, {"type": kind, "room": room, "id": uid(), **fields}, "bad_request"
    )
    assert "`" not in error["message"] and "$." not in error["message"], error
    assert await next_seq(o, room) == before + 1


async def test_references_that_name_no_message_answer_not_found_and_take_no_seq(
    api: Any, connect: Any
) -> None:
    room, owner_, bob_ = await pair(api, connect)
    o, b = owner_.ws, bob_.ws
    root = (await send_msg(o, room, "root"))["seq"]
    update = (await acked(b, {"type": "react", "room": room, "target": root, "key": "a"}))["seq"]
    inside = (
        await request(o, {"type": "send", "room": room, "id": uid(), "body": "in", "thread": root})
    )["seq"]
    gone = (await send_msg(o, room, "gone"))["seq"]
    await acked(o, {"type": "delete", "room": room, "target": gone})
    before = await next_seq(o, room)
    missing = before + 50
    cases: list[Frame] = [
        {"type": "edit", "target": missing, "body": "x"},
        {"type": "edit", "target": 0, "body": "x"},
        {"type": "edit", "target": update, "body": "x"},  # an update is no target
        {"type": "edit", "target": gone, "body": "x"},  # deleted
        {"type": "delete", "target": gone},
        {"type": "delete", "target": update},
        {"type": "react", "target": gone, "key": "a"},
        {"type": "react", "target": missing, "key": "a"},
        {"type": "unreact", "target": gone, "key": "a"},
        {"type": "unreact", "target": root, "key": "never"},  # no such reaction stands
        {"type": "send", "body": "x", "reply_to": missing},
        {"type": "send", "body": "x", "reply_to": update},
        {"type": "send", "body": "x", "thread": inside},  # a thread of a thread
        {"type": "send", "body": "x", "thread": update},
        {"type": "send", "body": "x", "thread": missing},
    ]
    for case in cases:
        await expect_error(o, {**case, "room": room, "id": uid()}, "not_found")
    assert await next_seq(o, room) == before + 1


async def test_a_room_seq_of_another_room_is_not_found(api: Any, connect: Any) -> None:
    room, owner_, _ = await pair(api, connect)
    o = owner_.ws
    elsewhere = await api.room((await user(api))[1])
    mine = await send_msg(o, room, "here")
    w = await connect((await user(api))[1])
    await join(w, elsewhere)
    for _ in range(3):
        await send_msg(w, elsewhere, "there")  # seqs 1..3 exist there
    await expect_error(
        w,
        {"type": "edit", "room": elsewhere, "id": uid(), "target": mine["seq"] + 3, "body": "x"},
        "not_found",
    )
    await expect_error(
        o, {"type": "delete", "room": room, "id": uid(), "target": mine["seq"] + 10}, "not_found"
    )


async def test_reaction_conflicts_and_the_fifty_first_key(api: Any, connect: Any) -> None:
    room, owner_, bob_ = await pair(api, connect)
    o, b = owner_.ws, bob_.ws
    target = (await send_msg(o, room, "popular"))["seq"]
    await acked(b, {"type": "react", "room": room, "target": target, "key": "k0"})
    await expect_error(
        b, {"type": "react", "room": room, "id": uid(), "target": target, "key": "k0"}, "conflict"
    )
    await acked(o, {"type": "react", "room": room, "target": target, "key": "k0"})  # another user's
    # Another user's reaction is not mine to remove.
    await acked(o, {"type": "react", "room": room, "target": target, "key": "mine"})
    await expect_error(
        b,
        {"type": "unreact", "room": room, "id": uid(), "target": target, "key": "mine"},
        "not_found",
    )
    for i in range(2, 50):  # with k0 and "mine": 50 keys
        await acked(o, {"type": "react", "room": room, "target": target, "key": f"k{i}"})
    before = await next_seq(o, room)
    await expect_error(
        b, {"type": "react", "room": room, "id": uid(), "target": target, "key": "k51"}, "too_large"
    )
    await acked(b, {"type": "react", "room": room, "target": target, "key": "k49"})  # it stands
    await acked(b, {"type": "unreact", "room": room, "target": target, "key": "k0"})
    await acked(b, {"type": "react", "room": room, "target": target, "key": "k0"})  # again
    assert await next_seq(o, room) == before + 4


async def test_edits_are_the_senders_and_deletes_the_senders_or_the_staffs(
    api: Any, connect: Any
) -> None:
    room, owner_, bob_ = await pair(api, connect)
    o, b = owner_.ws, bob_.ws
    carol, carol_token = await user(api)
    c = await connect(carol_token)
    await join(c, room)
    status, _ = await api.call("PUT", f"/api/v1/rooms/{room}/moderators/{carol}", owner_.token)
    assert status == 204
    mine = (await send_msg(b, room, "bob's"))["seq"]
    for ws in (o, c):
        await expect_error(
            ws,
            {"type": "edit", "room": room, "id": uid(), "target": mine, "body": "x"},
            "forbidden",
        )
    await acked(b, {"type": "edit", "room": room, "target": mine, "body": "bob's, edited"})
    owners = (await send_msg(o, room, "owner's"))["seq"]
    await expect_error(
        b, {"type": "delete", "room": room, "id": uid(), "target": owners}, "forbidden"
    )
    await acked(c, {"type": "delete", "room": room, "target": owners})  # a moderator's
    await acked(o, {"type": "delete", "room": room, "target": mine})  # the owner's
    own = (await send_msg(b, room, "again"))["seq"]
    await acked(b, {"type": "delete", "room": room, "target": own})  # the sender's


async def test_updates_need_the_room_joined_on_the_connection(api: Any, connect: Any) -> None:
    room, owner_, _ = await pair(api, connect)
    o = owner_.ws
    target = (await send_msg(o, room, "x"))["seq"]
    elsewhere = await connect(owner_.token)
    for frame in (
        {"type": "edit", "target": target, "body": "y"},
        {"type": "delete", "target": target},
        {"type": "react", "target": target, "key": "a"},
        {"type": "unreact", "target": target, "key": "a"},
    ):
        await expect_error(elsewhere, {**frame, "room": room, "id": uid()}, "not_joined")


async def test_archived_rooms_take_no_updates(api: Any, connect: Any) -> None:
    room, owner_, _ = await pair(api, connect)
    o = owner_.ws
    target = (await send_msg(o, room, "x"))["seq"]
    body = {"archived": True}
    status, _ = await api.call("PATCH", f"/api/v1/rooms/{room}", owner_.token, json=body)
    assert status == 200
    for frame in (
        {"type": "edit", "target": target, "body": "y"},
        {"type": "delete", "target": target},
        {"type": "react", "target": target, "key": "a"},
        {"type": "send", "body": "x", "reply_to": target},
    ):
        await expect_error(o, {**frame, "room": room, "id": uid()}, "forbidden")
