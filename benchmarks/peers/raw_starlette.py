"""A minimal broadcast server as a Starlette WebSocket endpoint under uvicorn.

The same workload as `raw_aiohttp.py` (see `wire.py`) through the ASGI
stack: uvicorn (uvloop, httptools, its `websockets` protocol) hands each
connection to a Starlette endpoint; every frame out is an awaited
`send_text`, and a `message` is encoded once with orjson, then awaited once
per member, as an ASGI application must.

Run: python benchmarks/peers/raw_starlette.py --host 127.0.0.1 --port 8094
"""

from __future__ import annotations

import contextlib

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from wire import Seqs, Session, parse_args

SEQS = Seqs()
ROOMS: dict[str, set[WebSocket]] = {}


async def chat(ws: WebSocket) -> None:
    await ws.accept()
    session = Session(SEQS)
    try:
        while True:
            out = session.receive(orjson.loads(await ws.receive_text()))
            if out.close is not None:
                await ws.close(out.close)
                return
            if out.enter is not None:
                ROOMS.setdefault(out.enter, set()).add(ws)
            if out.exit is not None:
                ROOMS.get(out.exit, set()).discard(ws)
            for r in out.replies:
                await ws.send_text(orjson.dumps(r).decode())
            if out.broadcast is not None:
                room, message = out.broadcast
                text = orjson.dumps(message).decode()
                for member in list(ROOMS.get(room, ())):
                    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                        await member.send_text(text)
    except WebSocketDisconnect:
        pass
    finally:
        for room in session.joined:
            ROOMS.get(room, set()).discard(ws)


async def ready(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        WebSocketRoute("/ws", chat),
        Route("/readyz", ready),
        Route("/healthz", ready),
    ]
)


def main() -> None:
    args = parse_args(__doc__)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="auto",
        http="auto",
        ws="websockets",
        ws_max_size=65536,
        ws_ping_interval=None,
        ws_per_message_deflate=False,
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
