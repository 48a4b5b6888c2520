"""Kick, ban and HTTP leave while joined: the connection gets `left` with a reason and stops
receiving the room."""

from __future__ import annotations

from support.wsutil import (
    assert_usable,
    barrier,
    expect_error,
    join,
    recv_until,
    request,
    send_and_see,
    uid,
    user,
)


async def setup_room(api, connect):
    """Owner and bob, both joined to a public room (bob on two connections)."""
    _, owner_token = await user(api)
    bob, bob_token = await user(api)
    room = await api.room(owner_token)
    o = await connect(owner_token)
    await join(o, room)
    b1 = await connect(bob_token)
    b2 = await connect(bob_token)
    await join(b1, room)
    await join(b2, room)
    return owner_token, bob, bob_token, room, o, (b1, b2)


async def assert_no_longer_receives(o, bobs, room: str) -> None:
    """The owner's message reaches the owner (so it was fanned out) but none of bob's sockets."""
    await send_and_see(o, room, uid("after"))
    for b in bobs:
        assert [f for f in await barrier(b) if f["type"] in ("message", "typing")] == []


async def test_kicked_connections_get_left_kicked_and_stop_receiving(api, connect):
    owner_token, bob, _, room, o, bobs = await setup_room(api, connect)
    status, _ = await api.call("DELETE", f"/api/v1/rooms/{room}/members/{bob}", owner_token)
    assert status == 204
    for b in bobs:
        left, _ = await recv_until(b, lambda f: f["type"] == "left")
        assert left == {"type": "left", "room": room, "reason": "kicked"}
    await o.send({"type": "typing", "room": room})
    await assert_no_longer_receives(o, bobs, room)
    # bob's connections are still open, just not in the room any more.
    for b in bobs:
        await assert_usable(b)
        await expect_error(
            b, {"type": "send", "room": room, "id": uid(), "body": "x"}, "not_joined"
        )
    # A kick is not a ban: bob may join the public room again.
    joined = await join(bobs[0], room)
    assert joined["room"] == room


async def test_kick_sends_offline_presence_to_the_others(api, connect):
    owner_token, bob, _, room, o, _ = await setup_room(api, connect)
    await api.call("DELETE", f"/api/v1/rooms/{room}/members/{bob}", owner_token)
    event, _ = await recv_until(
        o, lambda f: f["type"] == "presence" and f["user"] == bob and f["status"] == "offline"
    )
    assert event["room"] == room


async def test_banned_connections_get_left_banned_and_cannot_rejoin(api, connect):
    owner_token, bob, _, room, o, bobs = await setup_room(api, connect)
    status, _ = await api.call("PUT", f"/api/v1/rooms/{room}/bans/{bob}", owner_token)
    assert status == 204
    for b in bobs:
        left, _ = await recv_until(b, lambda f: f["type"] == "left")
        assert left == {"type": "left", "room": room, "reason": "banned"}
    await assert_no_longer_receives(o, bobs, room)
    await expect_error(bobs[0], {"type": "join", "room": room}, "forbidden")
    await expect_error(bobs[0], {"type": "history", "room": room}, "forbidden")
    await assert_usable(bobs[0])


async def test_banned_from_a_private_room_it_becomes_invisible(api, connect):
    _, owner_token = await user(api)
    bob, bob_token = await user(api)
    room = await api.room(owner_token, private=True)
    assert (await api.call("PUT", f"/api/v1/rooms/{room}/members/{bob}", owner_token))[0] == 204
    b = await connect(bob_token)
    await join(b, room)
    assert (await api.call("PUT", f"/api/v1/rooms/{room}/bans/{bob}", owner_token))[0] == 204
    left, _ = await recv_until(b, lambda f: f["type"] == "left")
    assert left == {"type": "left", "room": room, "reason": "banned"}
    await expect_error(b, {"type": "join", "room": room}, "not_found")


async def test_leaving_over_http_sends_left_left_to_every_connection(api, connect):
    _, bob, bob_token, room, o, bobs = await setup_room(api, connect)
    status, _ = await api.call("DELETE", f"/api/v1/rooms/{room}/members/{bob}", bob_token)
    assert status == 204
    for b in bobs:
        left, _ = await recv_until(b, lambda f: f["type"] == "left")
        assert left == {"type": "left", "room": room, "reason": "left"}
    await assert_no_longer_receives(o, bobs, room)
    status, body = await api.call("GET", f"/api/v1/rooms/{room}", bob_token)
    assert status == 200 and bob not in body["room"]["members"], body


async def test_kick_of_one_user_leaves_the_others_joined(api, connect):
    owner_token, bob, _, room, o, _ = await setup_room(api, connect)
    _, carol_token = await user(api)
    c = await connect(carol_token)
    await join(c, room)
    await api.call("DELETE", f"/api/v1/rooms/{room}/members/{bob}", owner_token)
    ack, _ = await send_and_see(o, room, "carol still here?")
    frame, before = await recv_until(c, lambda f: f["type"] == "message" and f["seq"] == ack["seq"])
    assert frame["body"] == "carol still here?"
    assert [f for f in before if f["type"] == "left"] == []
    reply = await request(c, {"type": "send", "room": room, "id": uid(), "body": "yes"})
    assert reply["type"] == "ack", reply
