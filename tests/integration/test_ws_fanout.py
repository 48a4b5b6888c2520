"""Fan-out survives members that vanish mid-stream: one dead socket never starves the others."""

from __future__ import annotations

import asyncio

from support.api import Api
from support.wsutil import join, messages, uid


async def test_members_dropping_during_fan_out_do_not_stall_delivery_to_the_rest(
    http, server_factory, connect
):
    # One user with 41 connections: the per-user connection count is off too.
    srv = server_factory(env={"HUBBUB_RATE_LIMIT": "0", "HUBBUB_MAX_CONNECTIONS_PER_USER": "0"})
    api = Api(http, srv.url)
    _, token = await api.user()
    room = await api.room(token)
    sender = await connect(token, url=srv.ws_url)
    await join(sender, room)
    members = [await connect(token, url=srv.ws_url) for _ in range(40)]
    for ws in members:
        await join(ws, room)
    doomed, survivors = members[::2], members[1::2]

    async def send(n: int) -> None:
        for _ in range(n):
            await sender.send({"type": "send", "room": room, "id": uid("m"), "body": "x" * 100})
            await asyncio.sleep(0.0005)  # a steady stream, so the drops land mid-flush

    # Drop half the members abruptly (no closing handshake) while messages are in flight.
    stream = asyncio.ensure_future(send(150))
    await messages(survivors[-1], room, 20)
    for ws in doomed:
        ws.ws._response.connection.transport.abort()
    await stream
    await send(50)

    # Every survivor gets all 200 messages, in order: a dead peer's failed write in the
    # middle of a flush must not cut the rest of that flush (and every later one) short.
    got = [await messages(ws, room, 200, within=20.0) for ws in survivors[:-1]]
    got.append(await messages(survivors[-1], room, 180, within=20.0))
    for frames in got[:-1]:
        assert [m["seq"] for m in frames] == list(range(1, 201))
    assert [m["seq"] for m in got[-1]] == list(range(21, 201))
