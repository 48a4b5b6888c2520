"""The benchmark peers (benchmarks/peers/) serve the workload they are compared on.

Each peer runs as a real process on a free port; two real clients say hello,
join one room, one sends, and both receive the `message` frame, the sender
its `ack` first. The raw peers are driven over aiohttp WebSockets, the
Socket.IO peer with python-socketio's AsyncClient, also as two processes
sharing rooms through a private Redis. The peer libraries are in
benchmarks/peers/requirements.txt: without them these tests skip, or fail
when CI is set.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.needs import modules
from support.redis_server import RedisServer
from support.server import ServerProcess

PEERS = Path(__file__).resolve().parents[2] / "benchmarks" / "peers"
LIBRARIES = {
    "raw_aiohttp": ("aiohttp",),
    "raw_picows": ("picows",),
    "raw_picows_batched": ("picows",),
    "raw_websockets": ("websockets",),
    "raw_starlette": ("starlette", "uvicorn"),
    "channels_server": ("django", "channels", "uvicorn"),
    "socketio_server": ("socketio",),
}


def require(*libraries: str) -> None:
    """The peer libraries are installed (benchmarks/peers/requirements.txt); else skip, or
    fail when CI is set."""
    modules(*libraries, hint="benchmarks/peers/requirements.txt")


class Peer(ServerProcess):
    """One peer server process on a free port, stopped by its PID."""

    def __init__(self, script: str, data: Path, *args: str) -> None:
        super().__init__(data, args=list(args))
        self.script = script

    def command(self) -> list[str]:
        script = str(PEERS / f"{self.script}.py")
        return [sys.executable, script, "--port", str(self.port), *self.extra_args]


@pytest.fixture
def start_peer(tmp_path: Path) -> Iterator[Callable[..., Peer]]:
    started: list[Peer] = []

    def start(script: str, *args: str) -> Peer:
        require(*LIBRARIES[script])
        data = tmp_path / f"{script}-{len(started)}"
        data.mkdir()
        peer = Peer(script, data, *args)
        peer.start()
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("peers-redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


# --- the raw protocol over aiohttp WebSockets ---------------------------------------------------


async def next_frame(ws: aiohttp.ClientWebSocketResponse, within: float = 5.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=within)
    assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg!r}"
    frame: dict[str, Any] = msg.json()
    return frame


async def hello_and_join(
    ws: aiohttp.ClientWebSocketResponse, name: str, room: str
) -> dict[str, Any]:
    await ws.send_json({"type": "hello", "token": name, "ref": "h"})
    welcome = await next_frame(ws)
    assert welcome["type"] == "welcome" and welcome["user"] == name and welcome["ref"] == "h"
    await ws.send_json({"type": "join", "room": room, "ref": "j"})
    joined = await next_frame(ws)
    assert joined["type"] == "joined" and joined["room"] == room and joined["ref"] == "j"
    return joined


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def raw_exchange(http: aiohttp.ClientSession, alice_port: int, bob_port: int) -> None:
    room, body = f"room-{uuid.uuid4().hex[:8]}", "x" * 150
    async with (
        http.ws_connect(f"ws://127.0.0.1:{alice_port}/ws") as alice,
        http.ws_connect(f"ws://127.0.0.1:{bob_port}/ws") as bob,
    ):
        await hello_and_join(alice, "alice", room)
        await hello_and_join(bob, "bob", room)
        await alice.send_json({"type": "ping", "ref": "p"})
        assert await next_frame(alice) == {"type": "pong", "ref": "p"}
        await alice.send_json({"type": "send", "room": room, "id": "m1", "body": body, "ref": "s"})
        ack = await next_frame(alice)
        assert ack["type"] == "ack" and ack["ref"] == "s" and ack["id"] == "m1"
        mine, theirs = await next_frame(alice), await next_frame(bob)
        assert mine == theirs
        assert mine["type"] == "message" and mine["room"] == room and mine["from"] == "alice"
        assert mine["body"] == body and mine["id"] == "m1" and mine["seq"] == ack["seq"]
        await bob.send_json({"type": "leave", "room": room, "ref": "l"})
        left = await next_frame(bob)
        assert left["type"] == "left" and left["ref"] == "l"


@pytest.mark.parametrize(
    "script", ["raw_aiohttp", "raw_picows", "raw_picows_batched", "raw_websockets", "raw_starlette"]
)
async def test_raw_peer_delivers_to_every_member(
    script: str, start_peer: Callable[..., Peer], http: aiohttp.ClientSession
) -> None:
    peer = start_peer(script)
    await raw_exchange(http, peer.port, peer.port)


async def test_raw_websockets_on_uvloop(
    start_peer: Callable[..., Peer], http: aiohttp.ClientSession
) -> None:
    require("uvloop")
    peer = start_peer("raw_websockets", "--uvloop")
    await raw_exchange(http, peer.port, peer.port)


async def test_channels_peer_in_memory(
    start_peer: Callable[..., Peer], http: aiohttp.ClientSession
) -> None:
    peer = start_peer("channels_server", "--layer", "memory")
    await raw_exchange(http, peer.port, peer.port)


async def test_channels_peer_two_processes_on_redis(
    start_peer: Callable[..., Peer], http: aiohttp.ClientSession, redis_url: str
) -> None:
    require("channels_redis")
    one = start_peer("channels_server", "--layer", "redis", "--redis", redis_url)
    two = start_peer("channels_server", "--layer", "redis", "--redis", redis_url)
    await raw_exchange(http, one.port, two.port)


# --- Socket.IO ----------------------------------------------------------------------------------


class SioClient:
    """A python-socketio AsyncClient that queues every event it receives."""

    def __init__(self) -> None:
        import socketio

        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        @self.sio.on("*")  # type: ignore[untyped-decorator]
        async def any_event(event: str, data: Any = None) -> None:
            await self.events.put((event, data))

    async def connect(self, port: int) -> None:
        await self.sio.connect(f"http://127.0.0.1:{port}", transports=["websocket"])

    async def next(self, within: float = 5.0) -> tuple[str, Any]:
        return await asyncio.wait_for(self.events.get(), within)

    async def hello_and_join(self, name: str, room: str) -> None:
        await self.sio.emit("hello", {"token": name, "ref": "h"})
        event, welcome = await self.next()
        assert event == "welcome" and welcome["type"] == "welcome" and welcome["user"] == name
        await self.sio.emit("join", {"room": room, "ref": "j"})
        event, joined = await self.next()
        assert event == "joined" and joined["type"] == "joined" and joined["ref"] == "j"


async def sio_exchange(alice_port: int, bob_port: int) -> None:
    room, body = f"room-{uuid.uuid4().hex[:8]}", "y" * 150
    alice, bob = SioClient(), SioClient()
    await alice.connect(alice_port)
    await bob.connect(bob_port)
    try:
        await alice.hello_and_join("alice", room)
        await bob.hello_and_join("bob", room)
        await alice.sio.emit("send", {"room": room, "id": "m1", "body": body, "ref": "s"})
        event, ack = await alice.next()
        assert event == "ack" and ack["type"] == "ack" and ack["ref"] == "s" and ack["id"] == "m1"
        (e1, mine), (e2, theirs) = await alice.next(), await bob.next()
        assert e1 == e2 == "message" and mine == theirs
        assert mine["type"] == "message" and mine["from"] == "alice" and mine["body"] == body
        assert mine["seq"] == ack["seq"] and mine["room"] == room and "ts" in mine
    finally:
        await alice.sio.disconnect()
        await bob.sio.disconnect()


async def test_socketio_peer_rooms(start_peer: Callable[..., Peer]) -> None:
    peer = start_peer("socketio_server")
    await sio_exchange(peer.port, peer.port)


async def test_socketio_peer_two_processes_share_rooms_on_redis(
    start_peer: Callable[..., Peer], redis_url: str
) -> None:
    one = start_peer("socketio_server", "--redis", redis_url)
    two = start_peer("socketio_server", "--redis", redis_url)
    await sio_exchange(one.port, two.port)
