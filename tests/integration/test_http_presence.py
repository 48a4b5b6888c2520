"""HTTP API, presence: GET /api/v1/rooms/{room}/presence answers who is online in the room now
(spec "HTTP API"): a user is online while one of their WebSockets has joined the room."""

from __future__ import annotations

from typing import Any


def names(body: Any) -> list[str]:
    """The users of a presence answer (names; objects with a name are accepted too)."""
    assert isinstance(body, dict) and isinstance(body.get("users"), list), body
    return [u if isinstance(u, str) else u["name"] for u in body["users"]]


def presence_reader(api: Any, room: str, token: str) -> Any:
    async def fetch() -> list[str]:
        status, body = await api.call("GET", f"/api/v1/rooms/{room}/presence", token)
        assert status == 200, (status, body)
        return names(body)

    return fetch


async def test_presence_of_a_room_nobody_joined_is_empty(api, new_user):
    owner = await new_user()
    room = await api.room(owner.token)
    status, body = await api.call("GET", f"/api/v1/rooms/{room}/presence", owner.token)
    assert status == 200, body
    assert body == {"users": []}


async def test_presence_lists_a_user_while_their_websocket_is_joined(
    api, new_user, connect, wait_for
):
    alice, bob = await new_user(), await new_user()
    room = await api.room(alice.token)
    fetch = presence_reader(api, room, alice.token)

    ws = await connect(bob.token)
    await ws.join(room)
    online = await wait_for(fetch, lambda users: bob.name in users, what=f"{bob.name} online")
    assert online.count(bob.name) == 1
    assert alice.name not in online, "alice has no connection, she is not online"

    await ws.close()
    await wait_for(fetch, lambda users: bob.name not in users, what=f"{bob.name} offline")


async def test_presence_needs_a_join_not_just_a_connection(api, new_user, connect, wait_for):
    alice, bob = await new_user(), await new_user()
    watched = await api.room(alice.token)
    other = await api.room(alice.token)
    ws = await connect(bob.token)
    await ws.join(other)
    # Once bob shows up in the room he joined, his connection is fully set up...
    await wait_for(presence_reader(api, other, alice.token), lambda users: bob.name in users)
    # ...and he is still not online in a room he never joined.
    assert bob.name not in await presence_reader(api, watched, alice.token)()


async def test_presence_drops_a_user_whose_last_connection_leaves_the_room(
    api, new_user, connect, wait_for
):
    alice, bob = await new_user(), await new_user()
    room = await api.room(alice.token)
    fetch = presence_reader(api, room, alice.token)
    first, second = await connect(bob.token), await connect(bob.token)
    await first.join(room)
    await second.join(room)
    await wait_for(fetch, lambda users: bob.name in users, what="bob online")

    await first.send({"type": "leave", "room": room})
    await first.recv_type("left")
    # The leave is processed (it was answered): bob is still online through `second`.
    assert bob.name in await fetch()

    await second.send({"type": "leave", "room": room})
    await second.recv_type("left")
    await wait_for(fetch, lambda users: bob.name not in users, what="bob offline after leave")
    # The connections are still open; only the room subscription went away.
    await first.send({"type": "ping"})
    await first.recv_type("pong")


async def test_presence_keeps_a_user_online_until_the_last_connection_closes(
    api, new_user, connect, wait_for
):
    alice, bob = await new_user(), await new_user()
    room = await api.room(alice.token)
    fetch = presence_reader(api, room, alice.token)
    first, second = await connect(bob.token), await connect(bob.token)
    await first.join(room)
    await second.join(room)
    await wait_for(fetch, lambda users: bob.name in users, what="bob online")
    await first.close()  # returns once the server answered the close handshake
    # A further round trip on another connection gives the server time to act on that close;
    # bob must still be online through `second`.
    third = await connect(bob.token)
    await third.join(room)
    await third.send({"type": "leave", "room": room})
    await third.recv_type("left")
    assert bob.name in await fetch()
    await second.close()
    await third.close()
    await wait_for(fetch, lambda users: bob.name not in users, what="bob offline after close")


async def test_presence_lists_every_online_user_with_their_registered_name(
    api, new_user, connect, wait_for, unique
):
    alice = await new_user()
    bob, carol = await new_user(unique("BoB")), await new_user(unique("CaRoL"))
    room = await api.room(alice.token)
    for user in (alice, bob, carol):
        ws = await connect(user.token)
        await ws.join(room)
    expected = {alice.name, bob.name, carol.name}
    users = await wait_for(
        presence_reader(api, room, bob.token), lambda users: set(users) == expected
    )
    assert len(users) == 3


async def test_presence_of_a_public_room_is_readable_by_a_non_member(
    api, new_user, connect, wait_for
):
    alice, outsider = await new_user(), await new_user()
    room = await api.room(alice.token)
    ws = await connect(alice.token)
    await ws.join(room)
    await wait_for(presence_reader(api, room, outsider.token), lambda users: users == [alice.name])


async def test_presence_of_a_private_room_is_404_for_outsiders(api, party, new_user, assert_error):
    p = await party(private=True)
    outsider = await new_user()
    result = await api.call("GET", f"/api/v1/rooms/{p.room}/presence", outsider.token)
    assert_error(result, 404, "not_found")


async def test_presence_of_a_missing_room_is_404(api, new_user, unique, assert_error):
    me = await new_user()
    result = await api.call("GET", f"/api/v1/rooms/{unique('r')}/presence", me.token)
    assert_error(result, 404, "not_found")
