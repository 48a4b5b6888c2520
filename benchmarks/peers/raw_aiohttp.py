"""A minimal raw aiohttp broadcast server: the baseline peer for the benchmarks.

It speaks just enough of hubbub's wire protocol for the same load generator
to drive it: `hello` -> `welcome` (any token; the token is the user name),
`join` -> `joined`, `leave` -> `left`, `ping` -> `pong`, and `send` -> `ack`
followed by a `message` frame written to every connection joined to the
room, encoded once and sent with one `ws.send_str` per member. Nothing is
persisted and nothing is checked: this is what a chat server costs with no
features, the yardstick hubbub is measured against.

Run: python benchmarks/peers/raw_aiohttp.py --host 127.0.0.1 --port 8090
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

import orjson
from aiohttp import WSMsgType, web


class Hub:
    """Rooms (name -> joined connections) and their message counters."""

    def __init__(self) -> None:
        self.rooms: dict[str, set[web.WebSocketResponse]] = {}
        self.seqs: dict[str, int] = {}

    def join(self, room: str, ws: web.WebSocketResponse) -> int:
        self.rooms.setdefault(room, set()).add(ws)
        return self.seqs.get(room, 0)

    def leave(self, room: str, ws: web.WebSocketResponse) -> None:
        self.rooms.get(room, set()).discard(ws)

    def next_seq(self, room: str) -> int:
        seq = self.seqs.get(room, 0) + 1
        self.seqs[room] = seq
        return seq


def reply(frame: dict[str, Any], kind: str, **fields: Any) -> str:
    out: dict[str, Any] = {"type": kind, **fields}
    if "ref" in frame:
        out["ref"] = frame["ref"]
    return orjson.dumps(out).decode()


async def handle_frame(
    hub: Hub, ws: web.WebSocketResponse, user: str, joined: set[str], frame: dict[str, Any]
) -> None:
    kind = frame.get("type")
    if kind == "send" and frame.get("room") in joined:
        room, seq, ts = frame["room"], hub.next_seq(frame["room"]), int(time.time() * 1000)
        await ws.send_str(reply(frame, "ack", room=room, id=frame["id"], seq=seq, ts=ts))
        message = orjson.dumps(
            {
                "type": "message",
                "room": room,
                "seq": seq,
                "id": frame["id"],
                "from": user,
                "body": frame["body"],
                "ts": ts,
            }
        ).decode()
        for member in list(hub.rooms.get(room, ())):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await member.send_str(message)
    elif kind == "join":
        joined.add(frame["room"])
        seq = hub.join(frame["room"], ws)
        await ws.send_str(
            reply(frame, "joined", room=frame["room"], seq=seq, presence=[], recovered=True)
        )
    elif kind == "leave":
        joined.discard(frame["room"])
        hub.leave(frame["room"], ws)
        await ws.send_str(reply(frame, "left", room=frame["room"]))
    elif kind == "ping":
        await ws.send_str(reply(frame, "pong"))
    else:
        await ws.send_str(reply(frame, "error", code="bad_request", message="unsupported"))


async def websocket(request: web.Request) -> web.WebSocketResponse:
    hub: Hub = request.app["hub"]
    ws = web.WebSocketResponse(max_msg_size=65536, compress=False)
    await ws.prepare(request)
    user: str | None = None
    joined: set[str] = set()
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            frame = orjson.loads(msg.data)
            if user is None:
                if frame.get("type") != "hello":
                    await ws.close(code=4001)
                    break
                user = str(frame.get("token"))
                await ws.send_str(
                    reply(frame, "welcome", user=user, session="s", node="raw", heartbeat=0)
                )
                continue
            await handle_frame(hub, ws, user, joined, frame)
    except ConnectionError:
        pass  # the client went away mid-reply
    finally:
        for room in joined:
            hub.leave(room, ws)
    return ws


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app() -> web.Application:
    app = web.Application()
    app["hub"] = Hub()
    app.router.add_get("/ws", websocket)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/healthz", ready)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(make_app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
