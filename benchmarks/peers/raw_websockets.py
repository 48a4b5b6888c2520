"""A minimal broadcast server on the `websockets` library (its asyncio API).

The same workload as `raw_aiohttp.py` (see `wire.py`): one handler coroutine
per connection reads frames with `async for`; replies are awaited `send`s;
a `message` is encoded once with orjson and written to every member with
`broadcast`, the library's fan-out call (it writes to each connection
without waiting for it to drain). `--uvloop` runs it on uvloop.

Run: python benchmarks/peers/raw_websockets.py --host 127.0.0.1 --port 8093 [--uvloop]
"""

from __future__ import annotations

import asyncio
import contextlib
from http import HTTPStatus

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from wire import Seqs, Session, encode, parse_args, use_uvloop

SEQS = Seqs()
ROOMS: dict[str, set[ServerConnection]] = {}


async def handler(ws: ServerConnection) -> None:
    session = Session(SEQS)
    try:
        async for data in ws:
            out = session.receive(orjson.loads(data))
            if out.close is not None:
                await ws.close(out.close)
                return
            if out.enter is not None:
                ROOMS.setdefault(out.enter, set()).add(ws)
            if out.exit is not None:
                ROOMS.get(out.exit, set()).discard(ws)
            for r in out.replies:
                await ws.send(encode(r), text=True)
            if out.broadcast is not None:
                room, message = out.broadcast
                broadcast(ROOMS.get(room, ()), encode(message), text=True)
    except ConnectionClosed:
        pass
    finally:
        for room in session.joined:
            ROOMS.get(room, set()).discard(ws)


def health(connection: ServerConnection, request: Request) -> Response | None:
    if request.path in ("/readyz", "/healthz"):
        return connection.respond(HTTPStatus.OK, "ok\n")
    if request.path != "/ws":
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
    return None


async def run(host: str, port: int) -> None:
    async with serve(
        handler,
        host,
        port,
        process_request=health,
        max_size=65536,
        compression=None,
        ping_interval=None,
    ) as server:
        await server.serve_forever()


def main() -> None:
    args = parse_args(__doc__, uvloop={"action": "store_true", "help": "run on uvloop"})
    if args.uvloop:
        use_uvloop()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.host, args.port))


if __name__ == "__main__":
    main()
