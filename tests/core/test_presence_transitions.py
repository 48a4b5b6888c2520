"""Presence transitions (`core.presence`) on fakes: online at a user's first connection in
a room, offline at their last, nothing in between."""

from __future__ import annotations

from fakes import FakeBus, FakePresence

from hubbub.core.presence import RoomPresence


def scene() -> tuple[RoomPresence, FakeBus]:
    bus = FakeBus()
    return RoomPresence(FakePresence(), bus), bus


def frame(user: str, status: str, room: str = "lobby") -> dict[str, str]:
    return {"type": "presence", "room": room, "user": user, "status": status}


async def test_the_first_connection_in_a_room_makes_the_user_online() -> None:
    presence, _ = scene()
    assert await presence.arrive("lobby", "alice", "c1") is True
    assert await presence.arrive("lobby", "alice", "c2") is False
    assert await presence.arrive("dev", "alice", "c1") is True  # another room
    assert list(await presence.online("lobby")) == ["alice"]


async def test_online_is_announced_to_the_room_but_the_arriving_connection() -> None:
    presence, bus = scene()
    presence.announce_online("lobby", "alice", "c1")
    assert bus.events == [("lobby", frame("alice", "online"), None, "c1")]


async def test_only_the_last_connection_leaving_announces_offline_to_everyone() -> None:
    presence, bus = scene()
    await presence.arrive("lobby", "alice", "c1")
    await presence.arrive("lobby", "alice", "c2")
    assert await presence.leave("lobby", "alice", "c1") is False
    assert bus.events == []
    assert await presence.leave("lobby", "alice", "c2") is True
    assert bus.events == [("lobby", frame("alice", "offline"), None, None)]
    assert list(await presence.online("lobby")) == []


async def test_a_connection_that_never_arrived_leaves_without_an_event() -> None:
    presence, bus = scene()
    await presence.arrive("lobby", "alice", "c1")
    assert await presence.leave("lobby", "alice", "c9") is False
    assert await presence.leave("dev", "alice", "c1") is False
    assert bus.events == []
    assert await presence.leave("lobby", "alice", "c1") is True
    assert await presence.leave("lobby", "alice", "c1") is False  # offline once
    assert len(bus.events) == 1
