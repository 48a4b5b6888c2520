"""The join cut (`core.join`) on fakes: each message once, in order, whatever commits
during the join; `since` and resume; a replay that fails; the "joined?" rule."""

from __future__ import annotations

import asyncio

import pytest
from fakes import FakeBus, FakeConnection, FakeLog, FakePresence, FakeRooms

from hubbub.core.join import Joins
from hubbub.core.presence import RoomPresence
from hubbub.protocol.errors import Forbidden, NotFound, NotJoined


class Scene:
    """One room, `lobby`, a log and bus around it, and alice's connection listening."""

    def __init__(self, replay_cap: int = 1000, max_rooms: int = 0) -> None:
        self.calls: list[str] = []
        self.bus = FakeBus(self.calls)
        self.log = FakeLog(self.bus)
        self.presence = FakePresence()
        self.rooms = FakeRooms("lobby", "dev")
        self.joins = Joins(
            self.rooms,
            self.log,
            self.bus,
            RoomPresence(self.presence, self.bus),
            replay_cap=replay_cap,
            max_rooms=max_rooms,
        )
        self.alice = self.connection("alice", "c1")

    def connection(self, user: str, connection: str) -> FakeConnection:
        conn = FakeConnection(user, connection)
        self.bus.attach(conn)
        return conn

    def commit(self, n: int, room: str = "lobby") -> None:
        for i in range(n):
            self.log.commit(room, f"text {i}")

    def commit_before_cut(self, room: str = "lobby") -> None:
        async def hook() -> None:
            self.log.commit(room, "during the join, below the cut")

        self.log.before_cut.append(hook)

    def commit_after_cut(self, room: str = "lobby") -> None:
        async def hook() -> None:
            self.log.commit(room, "during the join, above the cut")

        self.log.before_read.append(hook)


def joined(conn: FakeConnection) -> dict[str, object]:
    frames = [f for f in conn.out if f["type"] == "joined"]
    assert len(frames) == 1, conn.out
    return frames[0]


async def test_a_message_committed_during_a_join_is_delivered_once_before_later_ones() -> None:
    scene = Scene()
    scene.commit(3)
    scene.commit_before_cut()  # seq 4: replayed, and its held copy dropped
    scene.commit_after_cut()  # seq 5: held, released after the replay
    await scene.joins.join(scene.alice, "lobby", since=1)
    scene.commit(1)  # seq 6: live
    assert scene.alice.out[0]["type"] == "joined"
    assert joined(scene.alice)["seq"] == 4
    assert joined(scene.alice)["recovered"] is True
    assert scene.alice.seqs() == [2, 3, 4, 5, 6]


async def test_a_join_subscribes_before_it_reads_the_cut() -> None:
    scene = Scene()
    scene.commit(2)
    await scene.joins.join(scene.alice, "lobby", since=0)
    assert scene.calls == ["subscribe lobby", "last_seq lobby", "read lobby 0 2"]


async def test_a_join_without_since_gets_only_what_comes_after_the_cut() -> None:
    scene = Scene()
    scene.commit(2)
    scene.commit_before_cut()  # seq 3: older than the join
    await scene.joins.join(scene.alice, "lobby", since=None)
    scene.commit(1)
    assert joined(scene.alice)["seq"] == 3
    assert joined(scene.alice)["recovered"] is True
    assert scene.alice.seqs() == [4]
    assert not any(c.startswith("read") for c in scene.calls)


async def test_a_resume_at_the_last_seq_replays_nothing_and_is_recovered() -> None:
    scene = Scene()
    scene.commit(5)
    await scene.joins.join(scene.alice, "lobby", since=5)
    assert joined(scene.alice)["recovered"] is True
    assert scene.alice.seqs() == []


async def test_a_resume_past_the_replay_cap_is_not_recovered_and_replays_nothing() -> None:
    scene = Scene(replay_cap=3)
    scene.commit(5)
    await scene.joins.join(scene.alice, "lobby", since=1)  # 4 missed, 3 at most
    scene.commit(1)
    assert joined(scene.alice)["recovered"] is False
    assert scene.alice.seqs() == [6]  # live from the cut on: the client pages the rest


async def test_a_resume_at_the_replay_cap_is_replayed() -> None:
    scene = Scene(replay_cap=3)
    scene.commit(5)
    await scene.joins.join(scene.alice, "lobby", since=2)
    assert joined(scene.alice)["recovered"] is True
    assert scene.alice.seqs() == [3, 4, 5]


async def test_a_since_beyond_the_log_is_not_recovered() -> None:
    scene = Scene()
    scene.commit(2)
    await scene.joins.join(scene.alice, "lobby", since=9)
    assert joined(scene.alice)["seq"] == 2
    assert joined(scene.alice)["recovered"] is False
    assert scene.alice.seqs() == []


async def test_a_failing_replay_leaves_the_room_and_sends_nothing() -> None:
    scene = Scene()
    scene.commit(3)
    scene.commit_after_cut()
    scene.log.read_fails = OSError("disk gone")
    with pytest.raises(OSError, match="disk gone"):
        await scene.joins.join(scene.alice, "lobby", since=0)
    assert scene.alice.rooms == []
    assert scene.alice.held == {}
    scene.commit(1)
    assert scene.alice.out == []  # no joined, no replay, nothing live
    assert scene.presence.rooms == {}  # never counted online
    assert scene.bus.events == []


async def test_a_join_cancelled_while_reading_leaves_the_room() -> None:
    scene = Scene()
    scene.commit(1)

    async def cancelled() -> None:
        raise asyncio.CancelledError

    scene.log.before_cut.append(cancelled)
    with pytest.raises(asyncio.CancelledError):
        await scene.joins.join(scene.alice, "lobby", since=0)
    assert scene.alice.rooms == []


async def test_a_user_removed_during_the_replay_gets_no_joined() -> None:
    scene = Scene()
    scene.commit(2)

    async def kicked() -> None:
        scene.alice.drop("lobby")

    scene.log.before_read.append(kicked)
    await scene.joins.join(scene.alice, "lobby", since=0)
    assert scene.alice.out == []
    assert scene.presence.rooms == {}


async def test_a_refused_join_holds_nothing() -> None:
    scene = Scene()
    scene.rooms.banned.add(("lobby", "alice"))
    with pytest.raises(Forbidden):
        await scene.joins.join(scene.alice, "lobby", since=None)
    with pytest.raises(NotFound):
        await scene.joins.join(scene.alice, "nowhere", since=None)
    assert scene.alice.rooms == []
    assert scene.calls == []


async def test_the_rooms_per_connection_limit_refuses_a_new_room_but_not_a_rejoin() -> None:
    scene = Scene(max_rooms=1)
    await scene.joins.join(scene.alice, "lobby", since=None)
    with pytest.raises(Forbidden, match="at most 1 rooms"):
        await scene.joins.join(scene.alice, "dev", since=None)
    await scene.joins.join(scene.alice, "lobby", since=None)
    assert scene.alice.rooms == ["lobby"]
    assert scene.rooms.joined == [("alice", "lobby"), ("alice", "lobby")]


async def test_the_first_connection_of_a_user_announces_online_after_its_replay() -> None:
    scene = Scene()
    scene.commit(1)
    await scene.joins.join(scene.alice, "lobby", since=0)
    assert joined(scene.alice)["presence"] == ["alice"]
    assert scene.bus.events == [
        (
            "lobby",
            {"type": "presence", "room": "lobby", "user": "alice", "status": "online"},
            None,
            "c1",  # the joining connection learned it from `joined`
        )
    ]


async def test_a_second_connection_or_a_rejoin_announces_nothing() -> None:
    scene = Scene()
    await scene.joins.join(scene.alice, "lobby", since=None)
    await scene.joins.join(scene.alice, "lobby", since=None)  # the same connection again
    other = scene.connection("alice", "c2")
    await scene.joins.join(other, "lobby", since=None)
    assert len(scene.bus.events) == 1
    assert joined(other)["presence"] == ["alice"]


async def test_require_joined_passes_a_joined_room() -> None:
    scene = Scene()
    await scene.joins.require_joined("alice", ["lobby"], "lobby")


async def test_require_joined_says_not_joined_for_a_room_not_joined_here() -> None:
    scene = Scene()
    with pytest.raises(NotJoined, match="join 'lobby' on this connection first"):
        await scene.joins.require_joined("alice", ["dev"], "lobby")


async def test_require_joined_says_not_found_or_forbidden_first() -> None:
    scene = Scene()
    scene.rooms.banned.add(("lobby", "alice"))
    with pytest.raises(NotFound):
        await scene.joins.require_joined("alice", [], "nowhere")
    with pytest.raises(Forbidden):
        await scene.joins.require_joined("alice", [], "lobby")
