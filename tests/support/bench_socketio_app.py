"""A tiny python-socketio chat server speaking hubbub's objects as Socket.IO events.

What `hubbub bench --dialect socketio` is tested against: `hello` (any token is
the user name), `join`, `leave` and `send` events answered with `welcome`,
`joined`, `left`, `ack` and `message` events carrying the objects hubbub
would send (`type` included). No persistence. Pings every half second, so a
client that does not answer them is dropped within the test.

Run: python tests/support/bench_socketio_app.py --port 8099
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

import socketio
from aiohttp import web

sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=0.5, ping_timeout=2)
users: dict[str, str] = {}
seqs: dict[str, itertools.count[int]] = {}


def reply(kind: str, data: dict[str, Any], **fields: Any) -> dict[str, Any]:
    frame = {"type": kind, **fields}
    if "ref" in data:
        frame["ref"] = data["ref"]
    return frame


@sio.event
async def hello(sid: str, data: dict[str, Any]) -> None:
    users[sid] = str(data["token"])
    frame = reply("welcome", data, user=users[sid], session=sid, node="sio", heartbeat=25)
    await sio.emit("welcome", frame, to=sid)


@sio.event
async def join(sid: str, data: dict[str, Any]) -> None:
    room = data["room"]
    await sio.enter_room(sid, room)
    seqs.setdefault(room, itertools.count(1))
    await sio.emit(
        "joined", reply("joined", data, room=room, seq=0, presence=[], recovered=True), to=sid
    )


@sio.event
async def leave(sid: str, data: dict[str, Any]) -> None:
    await sio.leave_room(sid, data["room"])
    await sio.emit("left", reply("left", data, room=data["room"]), to=sid)


@sio.event
async def send(sid: str, data: dict[str, Any]) -> None:
    room = data["room"]
    seq, ts = next(seqs.setdefault(room, itertools.count(1))), int(time.time() * 1000)
    await sio.emit("ack", reply("ack", data, room=room, id=data["id"], seq=seq, ts=ts), to=sid)
    message = {"type": "message", "room": room, "seq": seq, "id": data["id"]}
    message |= {"from": users.get(sid, "?"), "body": data["body"], "ts": ts}
    await sio.emit("message", message, room=room)


@sio.event
async def disconnect(sid: str, *args: Any) -> None:
    users.pop(sid, None)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    sio.attach(app)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
