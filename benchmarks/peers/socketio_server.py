"""A python-socketio broadcast server (AsyncServer on aiohttp) with rooms.

The same workload as `raw_aiohttp.py` (see `wire.py`) over Socket.IO
(Engine.IO v4, websocket transport, at `/socket.io/`): the client emits
`hello` {"token"}, `join` {"room", "ref"}, `leave` {"room", "ref"}, `ping`
and `send` {"room", "id", "body", "ref"}; the server emits `welcome`,
`joined`, `left`, `pong`, `ack` and `message`, each with the same JSON
object the raw server sends for that frame ("type" included). Rooms are
Socket.IO rooms (`enter_room`, `emit(..., room=...)`: the packet is encoded
once, with orjson, and sent to every participant). `--redis URL` uses
`AsyncRedisManager`, so several processes on several ports share rooms.

Run: python benchmarks/peers/socketio_server.py --host 127.0.0.1 --port 8095 [--redis URL]
"""

from __future__ import annotations

from typing import Any

import orjson
import socketio
from aiohttp import web
from wire import Seqs, Session, parse_args, use_uvloop

EVENTS = ("hello", "join", "leave", "ping", "send")


class OrjsonModule:
    """The `json` interface Socket.IO encodes and decodes packets with."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(data: str | bytes, **_: Any) -> Any:
        return orjson.loads(data)


def make_app(redis: str | None) -> web.Application:
    manager = socketio.AsyncRedisManager(redis) if redis else None
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        json=OrjsonModule,
        cors_allowed_origins="*",
        max_http_buffer_size=65536,
        ping_interval=3600,
        ping_timeout=3600,
    )
    seqs = Seqs()
    sessions: dict[str, Session] = {}

    async def on_connect(sid: str, environ: dict[str, Any]) -> None:
        sessions[sid] = Session(seqs, node="socketio")

    async def on_disconnect(sid: str, *reason: Any) -> None:
        sessions.pop(sid, None)

    def handler(kind: str) -> Any:
        async def on_event(sid: str, data: Any = None) -> None:
            session = sessions.get(sid)
            if session is None:
                return
            frame = {**data, "type": kind} if isinstance(data, dict) else {"type": kind}
            out = session.receive(frame)
            if out.close is not None:
                await sio.disconnect(sid)
                return
            if out.enter is not None:
                await sio.enter_room(sid, out.enter)
            if out.exit is not None:
                await sio.leave_room(sid, out.exit)
            for r in out.replies:
                await sio.emit(r["type"], r, to=sid)
            if out.broadcast is not None:
                room, message = out.broadcast
                await sio.emit("message", message, room=room)

        return on_event

    sio.on("connect", on_connect)
    sio.on("disconnect", on_disconnect)
    for kind in EVENTS:
        sio.on(kind, handler(kind))

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    sio.attach(app)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/healthz", ready)
    return app


def main() -> None:
    args = parse_args(__doc__, redis={"default": None, "help": "share rooms through this Redis"})
    use_uvloop()
    web.run_app(make_app(args.redis), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
