"""The gateway in process: encode-once fan-out, one write per connection per loop turn,
the join hold, the slow-consumer cut-off and its accounting, with fake transports; and
fan-out over real WebSockets of a node's application."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY
from support.inprocess import Signup

from hubbub.engine.base import Message
from hubbub.protocol.events import message_frame, presence_frame, typing_frame
from hubbub.protocol.frames import encode, ws_text_frame
from hubbub.server.gateway import BEHIND_CHECK, Connection, Gateway

BUFFER = 64 * 1024


class FakeTransport:
    """What the gateway uses of an asyncio transport. `buffered` plays the socket's send
    buffer: a stuck peer reads nothing, so what is written stays buffered."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0
        self.stuck = False
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        if self.stuck:
            self.buffered += len(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True


def joined(gateway: Gateway, room: str, n: int, user: str = "u") -> list[Connection]:
    conns = []
    for i in range(n):
        conn = Connection(gateway, None, FakeTransport(), f"c{len(gateway.by_id)}")  # type: ignore[arg-type]
        conn.user, conn.token_hash = f"{user}{i}", f"t-{user}{i}"
        gateway.register(conn)
        gateway.start_sync(conn, room)
        gateway.finish_sync(conn, room, 0)
        conns.append(conn)
    return conns


def writes(conn: Connection) -> list[bytes]:
    transport: FakeTransport = conn.transport  # type: ignore[assignment]
    return transport.writes


def message(seq: int, room: str = "r", body: str = "hi") -> Message:
    return Message(room=room, seq=seq, id=f"m{seq}", sender="ann", body=body, ts=1000 + seq)


def slow_consumers() -> float:
    return REGISTRY.get_sample_value("hubbub_slow_consumers_total") or 0.0


async def turn() -> None:
    """Let the loop run the flush scheduled for this turn."""
    await asyncio.sleep(0)


async def test_a_message_is_encoded_once_and_the_same_bytes_go_to_everyone() -> None:
    gateway = Gateway(BUFFER)
    conns = joined(gateway, "r", 3)
    gateway.on_message(message(1))
    await turn()
    expected = ws_text_frame(
        b'{"type":"message","room":"r","seq":1,"id":"m1","from":"ann","body":"hi","ts":1001}'
    )
    assert [writes(c) for c in conns] == [[expected]] * 3
    assert writes(conns[0])[0] is writes(conns[1])[0] is writes(conns[2])[0]
    assert encode(message(1).frame()) == encode(message_frame("r", 1, "m1", "ann", "hi", 1001))


async def test_frames_of_one_loop_turn_leave_in_one_write() -> None:
    gateway = Gateway(BUFFER)
    (conn,) = joined(gateway, "r", 1)
    for seq in (1, 2, 3):
        gateway.on_message(message(seq))
    await turn()
    assert writes(conn) == [b"".join(ws_text_frame(encode(message(s).frame())) for s in (1, 2, 3))]
    gateway.on_message(message(4))
    await turn()
    assert len(writes(conn)) == 2


async def test_live_frames_wait_for_the_replay_and_only_newer_ones_follow_it() -> None:
    gateway = Gateway(BUFFER)
    conn = Connection(gateway, None, FakeTransport(), "s")  # type: ignore[arg-type]
    gateway.register(conn)
    gateway.start_sync(conn, "r")
    gateway.on_message(message(5))
    gateway.on_message(message(6))
    await turn()
    assert writes(conn) == []
    assert gateway.finish_sync(conn, "r", 5)  # the replay covered seq 5
    await turn()
    assert writes(conn) == [ws_text_frame(encode(message(6).frame()))]


async def test_a_write_that_passes_the_bound_cuts_the_reader_off_once() -> None:
    gateway = Gateway(BUFFER)
    slow, fast = joined(gateway, "r", 2)
    transport: FakeTransport = slow.transport  # type: ignore[assignment]
    transport.stuck, transport.buffered = True, BUFFER - 10
    before = slow_consumers()
    gateway.on_message(message(1))
    await turn()
    assert slow.closing and slow.close_code == 1008
    assert slow.close_reason == "send buffer overflow: resume with since"
    assert len(writes(slow)) == 1 and len(writes(fast)) == 1
    gateway.on_message(message(2))
    await turn()
    assert slow_consumers() == before + 1  # cut off once, not again per message
    assert len(writes(slow)) == 1 and len(writes(fast)) == 2


async def test_a_backlogged_reader_is_cut_off_before_the_write_that_would_pass_the_bound() -> None:
    gateway = Gateway(BUFFER)
    (slow,) = joined(gateway, "r", 1)
    transport: FakeTransport = slow.transport  # type: ignore[assignment]
    transport.stuck, transport.buffered = True, BUFFER // 2
    before = slow_consumers()
    gateway.on_message(message(1))
    await turn()
    assert slow.backlogged and not slow.closing and len(transport.writes) == 1
    transport.buffered = BUFFER - 10
    gateway.on_message(message(2))
    await turn()
    assert slow.closing and slow.close_code == 1008 and len(transport.writes) == 1
    assert slow_consumers() == before + 1


async def test_a_reader_that_keeps_up_gets_a_turn_over_the_bound() -> None:
    gateway = Gateway(BUFFER)
    (conn,) = joined(gateway, "r", 1)
    before = slow_consumers()
    for seq in range(1, 40):  # ~40 KiB each way past three quarters of the bound
        gateway.on_message(message(seq, body="x" * 2000))
    await turn()
    assert not conn.closing and len(writes(conn)) == 1 and len(writes(conn)[0]) > BUFFER
    assert slow_consumers() == before


async def test_a_backlogged_reader_loses_typing_and_gets_the_latest_presence() -> None:
    gateway = Gateway(BUFFER)
    (conn,) = joined(gateway, "r", 1)
    transport: FakeTransport = conn.transport  # type: ignore[assignment]
    transport.buffered = BUFFER // 2  # what the socket has not taken: backlogged after a write
    gateway.on_message(message(1))
    await turn()
    assert conn.backlogged and not conn.closing
    gateway.on_event("r", typing_frame("r", "bea"), "bea", None)
    for status in ("online", "offline", "online"):
        gateway.on_event("r", presence_frame("r", "Bea", status), None, None)
    gateway.on_event("r", presence_frame("r", "cal", "online"), None, None)
    await turn()
    assert len(transport.writes) == 1
    transport.buffered = 0  # caught up
    await asyncio.sleep(BEHIND_CHECK * 3)
    assert not conn.backlogged
    assert transport.writes[1:] == [
        ws_text_frame(encode(presence_frame("r", "Bea", "online")))
        + ws_text_frame(encode(presence_frame("r", "cal", "online")))
    ]


async def test_events_skip_the_sender() -> None:
    gateway = Gateway(BUFFER)
    a, b = joined(gateway, "r", 2)
    gateway.on_event("r", typing_frame("r", a.user), a.user.upper(), None)
    gateway.on_event("r", presence_frame("r", b.user, "online"), None, b.id)
    await turn()
    assert writes(a) == [ws_text_frame(encode(presence_frame("r", b.user, "online")))]
    assert writes(b) == [ws_text_frame(encode(typing_frame("r", a.user)))]


async def test_a_removed_user_hears_why_and_stops_receiving_the_room() -> None:
    gateway = Gateway(BUFFER)
    (conn,) = joined(gateway, "r", 1)
    gateway.on_removed("r", conn.user.upper(), "banned")
    gateway.on_message(message(1))
    await turn()
    assert writes(conn) == [ws_text_frame(b'{"type":"left","room":"r","reason":"banned"}')]
    assert conn.rooms == [] and "r" not in gateway.rooms


async def test_a_revoked_token_is_told_then_closed_with_4001() -> None:
    gateway = Gateway(BUFFER)
    conn, other = joined(gateway, "r", 2)
    gateway.on_token_revoked(conn.token_hash)
    assert writes(conn) == [
        ws_text_frame(
            b'{"type":"error","code":"unauthorized",'
            b'"message":"this token was revoked (logged out)"}'
        )
    ]
    assert conn.closing and conn.close_code == 4001 and not other.closing


async def hello(client: TestClient[Any, Any], token: str) -> Any:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "hello", "token": token, "ref": "h"})
    welcome = await ws.receive_json(timeout=5)
    assert welcome["type"] == "welcome" and welcome["ref"] == "h", welcome
    assert welcome["node"] == "test-node"
    return ws


async def test_fan_out_over_real_websockets(client: TestClient[Any, Any], signup: Signup) -> None:
    tokens = [await signup(name) for name in ("ann", "ben", "cat")]
    r = await client.post(
        "/api/v1/rooms", json={"name": "hall"}, headers={"Authorization": f"Bearer {tokens[0]}"}
    )
    assert r.status == 201
    sockets = [await hello(client, token) for token in tokens]
    for ws in sockets:
        await ws.send_json({"type": "join", "room": "hall", "ref": "j"})
        while (frame := await ws.receive_json(timeout=5))["type"] != "joined":
            pass  # presence of those who joined before
        assert frame["ref"] == "j" and frame["seq"] == 0 and frame["recovered"]
    await sockets[0].send_json(
        {"type": "send", "room": "hall", "id": "x1", "body": "hey", "ref": "s"}
    )
    received = []
    for ws in sockets:
        while True:
            msg = await ws.receive(timeout=5)
            assert msg.type == WSMsgType.TEXT
            if '"type":"message"' in msg.data:
                received.append(msg.data)
                break
    assert len(set(received)) == 1
    frame = msgspec.json.decode(received[0])
    assert (frame["from"], frame["body"], frame["seq"]) == ("ann", "hey", 1)
    for ws in sockets:
        await ws.close()
