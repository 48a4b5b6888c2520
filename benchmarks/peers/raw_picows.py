"""A minimal picows broadcast server: one transport write per WebSocket frame.

The same workload as `raw_aiohttp.py` (see `wire.py`), on picows, a
WebSocket library written in Cython: frames arrive as callbacks on a
`WSListener`, with no task per connection, and `WSTransport.send` frames and
writes a message at once. A `message` is encoded once with orjson and sent
with one `send` (one write system call) per member.

Run: python benchmarks/peers/raw_picows.py --host 127.0.0.1 --port 8091
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import orjson
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)
from wire import Seqs, Session, encode, parse_args, use_uvloop

TEXT = WSMsgType.TEXT


class Hub:
    """Rooms of one process: name -> the listeners joined to it."""

    def __init__(self) -> None:
        self.seqs = Seqs()
        self.rooms: dict[str, set[Connection]] = {}


class Connection(WSListener):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.session = Session(hub.seqs)
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type != TEXT:
            return
        out = self.session.receive(orjson.loads(frame.get_payload_as_bytes()))
        rooms = self.hub.rooms
        if out.close is not None:
            transport.send_close(out.close)  # type: ignore[arg-type]
            transport.disconnect()
            return
        if out.enter is not None:
            rooms.setdefault(out.enter, set()).add(self)
        if out.exit is not None:
            rooms.get(out.exit, set()).discard(self)
        for r in out.replies:
            self.write(encode(r))
        if out.broadcast is not None:
            room, message = out.broadcast
            self.fan_out(rooms.get(room, ()), encode(message))

    def fan_out(self, members: Iterable[Connection], data: bytes) -> None:
        for member in members:
            member.write(data)

    def write(self, data: bytes) -> None:
        t = self.transport
        if t is not None and not t.is_disconnected:
            t.send(TEXT, data)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        for room in self.session.joined:
            self.hub.rooms.get(room, set()).discard(self)
        self.transport = None


def listener_factory(
    hub: Hub, make: type[Connection]
) -> Callable[[WSUpgradeRequest], WSListener | WSUpgradeResponseWithListener | None]:
    def factory(request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener | None:
        if request.path == b"/ws":
            return make(hub)
        if request.path in (b"/readyz", b"/healthz"):
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_ok_response(b"ok"), None)
        return None  # 404

    return factory


async def serve(host: str, port: int, make: type[Connection]) -> None:
    server = await ws_create_server(listener_factory(Hub(), make), host, port, max_frame_size=65536)
    async with server:
        await server.serve_forever()


def main() -> None:
    args = parse_args(__doc__)
    use_uvloop()
    asyncio.run(serve(args.host, args.port, Connection))


if __name__ == "__main__":
    main()
