"""Presence events (online/offline per user, not per connection) and heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
from support.wsutil import (
    api_at,
    assert_quiet,
    barrier,
    join,
    recv_until,
    request,
    send_and_see,
    user,
)


def presence_of(user: str, status: str | None = None):
    def pred(frame: dict[str, Any]) -> bool:
        return (
            frame["type"] == "presence"
            and frame.get("user") == user
            and (status is None or frame.get("status") == status)
        )

    return pred


async def test_first_connection_joining_announces_online_to_others_not_to_itself(api, connect):
    _, ta = await user(api)
    bob, tb = await user(api)
    room = await api.room(ta)
    a = await connect(ta)
    await join(a, room)
    b = await connect(tb)
    joined = await join(b, room)
    assert bob in joined["presence"]
    event, _ = await recv_until(a, presence_of(bob))
    assert event == {"type": "presence", "room": room, "user": bob, "status": "online"}
    # The joining connection learns the state from `joined.presence`, not from an event.
    assert [f for f in await barrier(b) if f["type"] == "presence"] == []


async def test_second_connection_of_a_user_does_not_reannounce_online(api, connect):
    _, ta = await user(api)
    bob, tb = await user(api)
    room = await api.room(ta)
    a = await connect(ta)
    await join(a, room)
    b1 = await connect(tb)
    await join(b1, room)
    await recv_until(a, presence_of(bob, "online"))
    b2 = await connect(tb)
    joined = await join(b2, room)
    assert bob in joined["presence"]
    # b2 speaks after joining: anything its join caused reaches `a` before that message.
    ack, _ = await send_and_see(b2, room, "second tab")
    _, before = await recv_until(a, lambda f: f["type"] == "message" and f["seq"] == ack["seq"])
    assert [f for f in before if f["type"] == "presence"] == []


async def test_offline_only_when_the_last_connection_leaves(api, connect):
    _, ta = await user(api)
    bob, tb = await user(api)
    room = await api.room(ta)
    a = await connect(ta)
    await join(a, room)
    b1 = await connect(tb)
    b2 = await connect(tb)
    await join(b1, room)
    await join(b2, room)
    await recv_until(a, presence_of(bob, "online"))

    await request(b1, {"type": "leave", "room": room})
    ack, _ = await send_and_see(b2, room, "one tab left")
    _, before = await recv_until(a, lambda f: f["type"] == "message" and f["seq"] == ack["seq"])
    assert [f for f in before if f["type"] == "presence"] == []

    await request(b2, {"type": "leave", "room": room})
    event, before = await recv_until(a, presence_of(bob))
    assert event == {"type": "presence", "room": room, "user": bob, "status": "offline"}
    status, body = await api.call("GET", f"/api/v1/rooms/{room}/presence", ta)
    assert status == 200 and bob not in body["users"], body


async def test_offline_when_the_last_connection_disconnects(api, connect):
    alice, ta = await user(api)
    bob, tb = await user(api)
    room = await api.room(ta)
    a = await connect(ta)
    await join(a, room)
    b1 = await connect(tb)
    b2 = await connect(tb)
    await join(b1, room)
    await join(b2, room)
    await recv_until(a, presence_of(bob, "online"))
    status, body = await api.call("GET", f"/api/v1/rooms/{room}/presence", ta)
    assert status == 200 and set(body["users"]) == {alice, bob}, body

    await b1.close()
    ack, _ = await send_and_see(b2, room, "still one tab")
    _, before = await recv_until(a, lambda f: f["type"] == "message" and f["seq"] == ack["seq"])
    assert [f for f in before if f["type"] == "presence"] == []

    await b2.close()
    event, _ = await recv_until(a, presence_of(bob))
    assert event == {"type": "presence", "room": room, "user": bob, "status": "offline"}
    newcomer = await connect(ta)
    joined = await join(newcomer, room)
    assert bob not in joined["presence"]
    assert alice in joined["presence"]


async def test_presence_is_per_room(api, connect):
    _, ta = await user(api)
    bob, tb = await user(api)
    r1 = await api.room(ta)
    r2 = await api.room(ta)
    a = await connect(ta)
    await join(a, r1)
    await join(a, r2)
    b = await connect(tb)
    await join(b, r1)
    event, _ = await recv_until(a, presence_of(bob, "online"))
    assert event["room"] == r1
    await join(b, r2)
    event, _ = await recv_until(a, presence_of(bob, "online"))
    assert event["room"] == r2
    await request(b, {"type": "leave", "room": r1})
    event, _ = await recv_until(a, presence_of(bob))
    assert (event["room"], event["status"]) == (r1, "offline")
    # Still online in r2: a message from b there arrives with no presence change before it.
    ack, _ = await send_and_see(b, r2, "still in r2")
    _, before = await recv_until(a, lambda f: f["type"] == "message" and f["seq"] == ack["seq"])
    assert [f for f in before if f["type"] == "presence"] == []


async def test_silent_client_is_dropped_within_three_heartbeats_and_goes_offline(
    server_factory, api, connect, http
):
    srv = server_factory(env={"HUBBUB_HEARTBEAT": "1"})
    remote = api_at(api, srv)
    _, ta = await remote.user()
    bob, tb = await remote.user()
    room = await remote.room(ta)
    a = await connect(ta, url=srv.ws_url)  # autoping: answers pings while it reads
    await join(a, room)

    # bob never answers pings: no autoping, and nobody reads after the join.
    silent = await http.ws_connect(srv.ws_url, autoping=False)
    try:
        await silent.send_json({"type": "hello", "token": tb})
        welcome = await silent.receive_json(timeout=5)
        assert welcome["type"] == "welcome" and welcome["heartbeat"] == 1, welcome
        await silent.send_json({"type": "join", "room": room, "ref": "j"})
        while True:
            msg = await silent.receive(timeout=5)
            if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data).get("ref") == "j":
                break
        await recv_until(a, presence_of(bob, "online"))

        loop = asyncio.get_running_loop()
        went_silent = loop.time()
        event, _ = await recv_until(a, presence_of(bob), 3 * 1 + 2)
        elapsed = loop.time() - went_silent
        assert event == {"type": "presence", "room": room, "user": bob, "status": "offline"}
        assert elapsed <= 3 * 1 + 1, elapsed  # three intervals, plus scheduling slack

        # The server really closed bob's connection (only pings and the close are left).
        while True:
            msg = await silent.receive(timeout=5)
            if msg.type != aiohttp.WSMsgType.PING:
                break
        assert msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.ERROR,
        ), msg
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(silent.close(), 2)

    # alice, who answers pings, is still connected well past three intervals.
    await barrier(a)
    status, body = await remote.call("GET", f"/api/v1/rooms/{room}/presence", ta)
    assert status == 200 and bob not in body["users"], body


async def test_client_answering_pings_survives_many_heartbeats(server_factory, api, connect):
    srv = server_factory(env={"HUBBUB_HEARTBEAT": "1"})
    remote = api_at(api, srv)
    _, token = await remote.user()
    room = await remote.room(token)
    ws = await connect(token, url=srv.ws_url)
    joined = await join(ws, room)
    assert joined["room"] == room
    # Read (and so answer pings) for four intervals: no close, no error arrives.
    await assert_quiet(ws, 4)
    await barrier(ws)
