"""Guarantee 4: `join` with `since` replays what was missed, exactly once, before live ones."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support.wsutil import (
    api_at,
    barrier,
    join,
    messages,
    module_server,
    recv_until,
    request,
    send_and_see,
    send_msg,
    uid,
    user,
)


@pytest.fixture(scope="module")
def unlimited_server(tmp_path_factory, shared_server):
    yield from module_server(tmp_path_factory, shared_server, env={"HUBBUB_RATE_LIMIT": "0"})


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory, shared_server):
    yield from module_server(
        tmp_path_factory, shared_server, env={"HUBBUB_REPLAY_CAP": "5", "HUBBUB_RATE_LIMIT": "0"}
    )


async def room_with_messages(api, connect, n: int, url: str | None = None):
    """A room holding `n` messages; returns (token, room, writer ws joined to it, acks)."""
    _, token = await user(api)
    room = await api.room(token)
    writer = await connect(token, url=url)
    await join(writer, room)
    acks = [await send_msg(writer, room, f"old {i}", f"old-{i}") for i in range(1, n + 1)]
    assert [a["seq"] for a in acks] == list(range(1, n + 1))
    return token, room, writer, acks


async def join_since(ws: Any, room: str, since: int) -> dict[str, Any]:
    """Join with `since`; the very first frame back must be `joined` (nothing before it)."""
    await ws.send({"type": "join", "room": room, "since": since, "ref": "resume"})
    first = await ws.recv()
    assert first["type"] == "joined" and first["ref"] == "resume", first
    return first


async def test_join_since_replays_exactly_the_missed_messages_in_order_then_live(api, connect):
    token, room, writer, acks = await room_with_messages(api, connect, 10)
    reader = await connect(token)
    joined = await join_since(reader, room, 4)
    assert joined["room"] == room
    assert joined["seq"] == 10
    assert joined["recovered"] is True
    replay = await messages(reader, room, 6)
    assert [m["seq"] for m in replay] == [5, 6, 7, 8, 9, 10]
    # Replayed frames are full `message` frames, identical to the live ones.
    assert replay[0] == {
        "type": "message",
        "room": room,
        "seq": 5,
        "id": "old-5",
        "from": replay[0]["from"],
        "body": "old 5",
        "ts": acks[4]["ts"],
    }
    live = await send_msg(writer, room, "new")
    (got,) = await messages(reader, room, 1)
    assert got["seq"] == live["seq"] == 11


async def test_join_since_last_seq_replays_nothing(api, connect):
    token, room, writer, _ = await room_with_messages(api, connect, 3)
    reader = await connect(token)
    joined = await join_since(reader, room, 3)
    assert (joined["seq"], joined["recovered"]) == (3, True)
    live = await send_msg(writer, room, "live")
    (got,) = await messages(reader, room, 1)
    assert got["seq"] == live["seq"] == 4


async def test_join_since_zero_replays_the_whole_room(api, connect):
    token, room, _, _ = await room_with_messages(api, connect, 5)
    reader = await connect(token)
    joined = await join_since(reader, room, 0)
    assert (joined["seq"], joined["recovered"]) == (5, True)
    assert [m["seq"] for m in await messages(reader, room, 5)] == [1, 2, 3, 4, 5]
    assert [f for f in await barrier(reader) if f["type"] == "message"] == []


async def test_join_since_on_an_empty_room(api, connect):
    _, token = await user(api)
    room = await api.room(token)
    ws = await connect(token)
    joined = await join_since(ws, room, 0)
    assert (joined["seq"], joined["recovered"]) == (0, True)
    ack, _ = await send_and_see(ws, room, "first")
    assert ack["seq"] == 1


async def test_rejoin_with_since_replays_without_duplicating_live_delivery(api, connect):
    token, room, writer, _ = await room_with_messages(api, connect, 4)
    reader = await connect(token)
    await join(reader, room)
    joined = await join_since(reader, room, 2)
    assert (joined["seq"], joined["recovered"]) == (4, True)
    assert [m["seq"] for m in await messages(reader, room, 2)] == [3, 4]
    await send_msg(writer, room, "a")
    await send_msg(writer, room, "b")
    assert [m["seq"] for m in await messages(reader, room, 2)] == [5, 6]
    assert [f for f in await barrier(reader) if f["type"] == "message"] == []


async def test_resume_after_reconnect_gets_what_was_missed_while_away(api, connect):
    _, room, writer, _ = await room_with_messages(api, connect, 2)
    _, other_token = await user(api)
    reader = await connect(other_token)
    await join(reader, room)
    last = 2  # the last seq this client saw
    await reader.close()
    missed = [await send_msg(writer, room, f"while away {i}") for i in range(3)]
    again = await connect(other_token)
    joined = await join_since(again, room, last)
    assert (joined["seq"], joined["recovered"]) == (5, True)
    replay = await messages(again, room, 3)
    assert [m["seq"] for m in replay] == [a["seq"] for a in missed]


async def test_resume_during_a_live_stream_has_no_gap_no_duplicate_and_keeps_order(
    api, connect, unlimited_server
):
    remote = api_at(api, unlimited_server)
    url = unlimited_server.ws_url
    _, token = await user(remote)
    room = await remote.room(token)
    writers = []
    for _ in range(2):
        ws = await connect(token, url=url)
        await join(ws, room)
        writers.append(ws)

    stop = asyncio.Event()
    acked: list[int] = []
    progress = asyncio.Condition()

    async def live_sender(ws: Any, name: str) -> None:
        """Keep up to 10 sends in flight, at most 150 a second, until told to stop."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        k = 0
        in_flight: set[str] = set()
        while not stop.is_set() or in_flight:
            can_send = not stop.is_set() and len(in_flight) < 10
            if can_send and not in_flight:  # nothing to wait for but the pace
                await asyncio.sleep(max(0.0, start + k / 150 - loop.time()))
            if can_send and (not in_flight or loop.time() >= start + k / 150):
                ref = f"{name}-{k}"
                k += 1
                await ws.send({"type": "send", "room": room, "id": ref, "body": ref, "ref": ref})
                in_flight.add(ref)
                continue
            frame, _ = await recv_until(ws, lambda f: f.get("ref") in in_flight, 30)
            assert frame["type"] == "ack", frame
            in_flight.discard(frame["ref"])
            async with progress:
                acked.append(frame["seq"])
                progress.notify_all()

    async def wait_acked(n: int) -> None:
        async with progress:
            await asyncio.wait_for(progress.wait_for(lambda: len(acked) >= n), 30)

    senders = [asyncio.create_task(live_sender(ws, f"w{i}")) for i, ws in enumerate(writers)]
    try:
        await wait_acked(100)
        reader = await connect(token, url=url)
        since = 40
        joined = await join_since(reader, room, since)
        assert joined["recovered"] is True, joined
        last_at_join = joined["seq"]
        assert last_at_join >= 100
        # Read the replay plus at least 100 live messages while the senders keep going.
        stream = await messages(reader, room, last_at_join - since + 100, 30)
    finally:
        stop.set()
        results = await asyncio.gather(*senders, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    final = max(acked)
    stream += await messages(reader, room, final - since - len(stream), 30)
    assert [m["seq"] for m in stream] == list(range(since + 1, final + 1))
    assert len({m["id"] for m in stream}) == len(stream)
    assert [f for f in await barrier(reader) if f["type"] == "message"] == []


async def test_resume_within_the_replay_cap_is_recovered(api, connect, capped_server):
    remote = api_at(api, capped_server)
    token, room, _, _ = await room_with_messages(remote, connect, 12, capped_server.ws_url)
    reader = await connect(token, url=capped_server.ws_url)
    joined = await join_since(reader, room, 7)  # exactly 5 (= the cap) behind
    assert (joined["seq"], joined["recovered"]) == (12, True)
    assert [m["seq"] for m in await messages(reader, room, 5)] == [8, 9, 10, 11, 12]


async def test_resume_beyond_the_replay_cap_is_not_recovered_and_replays_nothing(
    api, connect, capped_server
):
    remote = api_at(api, capped_server)
    token, room, writer, _ = await room_with_messages(remote, connect, 12, capped_server.ws_url)
    for since in (6, 2, 0):  # 6, 10 and 12 messages behind, the cap is 5
        reader = await connect(token, url=capped_server.ws_url)
        joined = await join_since(reader, room, since)
        assert (joined["seq"], joined["recovered"]) == (12, False), (since, joined)
        assert [f for f in await barrier(reader) if f["type"] == "message"] == []
    # Live delivery still works; the client pages history for the rest.
    live = await send_msg(writer, room, "live")
    (got,) = await messages(reader, room, 1)
    assert got["seq"] == live["seq"] == 13
    page = await request(reader, {"type": "history", "room": room, "before": 13, "limit": 200})
    assert [m["seq"] for m in page["messages"]] == list(range(1, 13))


async def test_resume_since_ahead_of_the_room_is_not_recovered(api, connect):
    token, room, writer, _ = await room_with_messages(api, connect, 3)
    reader = await connect(token)
    joined = await join_since(reader, room, 50)
    assert (joined["seq"], joined["recovered"]) == (3, False)
    assert [f for f in await barrier(reader) if f["type"] == "message"] == []
    live = await send_msg(writer, room, "live")
    (got,) = await messages(reader, room, 1)
    assert got["seq"] == live["seq"] == 4


async def test_join_since_needs_access_like_a_plain_join(api, connect):
    _, owner_token = await user(api)
    secret = await api.room(owner_token, private=True)
    _, token = await user(api)
    ws = await connect(token)
    reply = await request(ws, {"type": "join", "room": secret, "since": 0})
    assert reply["type"] == "error" and reply["code"] == "not_found", reply
    assert [f for f in await barrier(ws) if f["type"] == "message"] == []
    reply = await request(ws, {"type": "join", "room": uid("nosuch"), "since": 0})
    assert reply["type"] == "error" and reply["code"] == "not_found", reply
