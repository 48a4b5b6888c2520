"""The in-process engine parts: presence counted by session, and the bus that fans out."""

from __future__ import annotations

from support.engine_handles import BusRecorder

from hubbub.engine.base import Message
from hubbub.engine.memory import MemoryBus, MemoryPresence


async def test_first_session_of_a_user_in_a_room_is_reported_first() -> None:
    presence = MemoryPresence()
    assert await presence.add("lobby", "alice", "s1") is True
    assert await presence.add("lobby", "alice", "s2") is False
    assert await presence.online("lobby") == ["alice"]


async def test_only_the_last_session_leaving_is_reported_last() -> None:
    presence = MemoryPresence()
    await presence.add("lobby", "alice", "s1")
    await presence.add("lobby", "alice", "s2")
    assert await presence.remove("lobby", "alice", "s1") is False
    assert await presence.online("lobby") == ["alice"]
    assert await presence.remove("lobby", "alice", "s2") is True
    assert await presence.online("lobby") == []


async def test_adding_the_same_session_twice_counts_it_once() -> None:
    presence = MemoryPresence()
    assert await presence.add("lobby", "alice", "s1") is True
    assert await presence.add("lobby", "alice", "s1") is False
    assert await presence.remove("lobby", "alice", "s1") is True
    assert await presence.online("lobby") == []


async def test_removing_an_unknown_session_is_not_a_last_leave() -> None:
    presence = MemoryPresence()
    assert await presence.remove("lobby", "alice", "s1") is False
    await presence.add("lobby", "alice", "s1")
    assert await presence.remove("lobby", "alice", "other") is False
    assert await presence.remove("lobby", "bob", "s1") is False
    assert await presence.remove("elsewhere", "alice", "s1") is False
    assert await presence.online("lobby") == ["alice"]


async def test_a_session_leaving_twice_is_reported_last_once() -> None:
    presence = MemoryPresence()
    await presence.add("lobby", "alice", "s1")
    assert await presence.remove("lobby", "alice", "s1") is True
    assert await presence.remove("lobby", "alice", "s1") is False


async def test_rooms_are_counted_independently() -> None:
    presence = MemoryPresence()
    assert await presence.add("lobby", "alice", "s1") is True
    assert await presence.add("dev", "alice", "s1") is True  # the same session in a second room
    assert await presence.add("dev", "alice", "s2") is False
    assert await presence.remove("lobby", "alice", "s1") is True
    assert await presence.online("lobby") == []
    assert await presence.online("dev") == ["alice"]
    assert await presence.remove("dev", "alice", "s1") is False
    assert await presence.remove("dev", "alice", "s2") is True


async def test_users_are_counted_independently() -> None:
    presence = MemoryPresence()
    assert await presence.add("lobby", "alice", "s1") is True
    assert await presence.add("lobby", "bob", "s2") is True
    assert await presence.remove("lobby", "alice", "s1") is True
    assert await presence.online("lobby") == ["bob"]


async def test_online_lists_each_user_once_sorted_case_insensitively() -> None:
    presence = MemoryPresence()
    for user, session in [("carol", "a"), ("Bob", "b"), ("alice", "c"), ("carol", "d")]:
        await presence.add("lobby", user, session)
    assert list(await presence.online("lobby")) == ["alice", "Bob", "carol"]


async def test_online_of_an_unknown_room_is_empty() -> None:
    assert list(await MemoryPresence().online("nowhere")) == []


async def test_a_user_can_come_back_after_leaving() -> None:
    presence = MemoryPresence()
    await presence.add("lobby", "alice", "s1")
    await presence.remove("lobby", "alice", "s1")
    assert await presence.add("lobby", "alice", "s2") is True


def message(seq: int, room: str = "lobby") -> Message:
    return Message(room=room, seq=seq, id=f"m{seq}", sender="alice", body=f"#{seq}", ts=seq)


async def test_bus_delivers_messages_to_every_listener_in_publish_order() -> None:
    bus = MemoryBus()
    listeners = [BusRecorder(), BusRecorder()]
    for listener in listeners:
        bus.attach(listener)
    sent = [message(seq) for seq in range(1, 51)]
    for m in sent:
        bus.deliver(m)
    for listener in listeners:
        assert listener.seen == [("message", m) for m in sent]


async def test_bus_delivers_synchronously() -> None:
    bus = MemoryBus()
    listener = BusRecorder()
    bus.attach(listener)
    bus.deliver(message(1))
    assert listener.seen == [("message", message(1))]


async def test_bus_keeps_messages_events_and_notices_in_one_order() -> None:
    bus = MemoryBus()
    listener = BusRecorder()
    bus.attach(listener)
    typing = {"type": "typing", "room": "lobby", "user": "bob"}
    bus.deliver(message(1))
    bus.publish_event("lobby", typing, skip_user="bob")
    bus.publish_removed("lobby", "carol", "kicked")
    bus.deliver(message(2))
    bus.publish_token_revoked("abc123")
    bus.publish_event("lobby", typing, skip_connection="s9")
    assert listener.seen == [
        ("message", message(1)),
        ("event", "lobby", typing, "bob", None),
        ("removed", "lobby", "carol", "kicked"),
        ("message", message(2)),
        ("revoked", "abc123"),
        ("event", "lobby", typing, None, "s9"),
    ]


async def test_bus_without_listeners_drops_what_is_published() -> None:
    bus = MemoryBus()
    bus.deliver(message(1))
    bus.publish_event("lobby", {"type": "typing"})
    bus.publish_removed("lobby", "alice", "left")
    bus.publish_token_revoked("x")
    late = BusRecorder()
    bus.attach(late)
    assert late.seen == []


async def test_message_frame_has_the_wire_fields() -> None:
    assert message(3).frame() == {
        "type": "message",
        "room": "lobby",
        "seq": 3,
        "id": "m3",
        "from": "alice",
        "body": "#3",
        "ts": 3,
    }
