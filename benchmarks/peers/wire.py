"""The wire protocol subset every raw peer speaks, without I/O.

The same frames as `raw_aiohttp.py`: `hello` -> `welcome` (any token; the
token is the user name), `join` -> `joined`, `leave` -> `left`, `ping` ->
`pong`, and `send` -> `ack` to the sender followed by one `message` frame for
every member of the room. A peer server feeds each decoded frame of a
connection to its `Session` and carries out the `Outcome` with its own
library: the replies go to the sender in order, then the broadcast (encoded
once by the peer) goes to every connection joined to the room.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

Frame = dict[str, Any]


def reply(frame: Frame, kind: str, **fields: Any) -> Frame:
    out: Frame = {"type": kind, **fields}
    if "ref" in frame:
        out["ref"] = frame["ref"]
    return out


def encode(frame: Frame) -> bytes:
    return orjson.dumps(frame)


@dataclass
class Outcome:
    """What one received frame asks of the server, in this order."""

    enter: str | None = None  # add the connection to this room first
    exit: str | None = None  # remove the connection from this room first
    replies: list[Frame] = field(default_factory=list)  # to the sender
    broadcast: tuple[str, Frame] | None = None  # (room, frame) to every member
    close: int | None = None  # close the connection with this code


class Seqs:
    """Per-room message counters, shared by every connection of a process."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def next(self, room: str) -> int:
        seq = self.last.get(room, 0) + 1
        self.last[room] = seq
        return seq


class Session:
    """One connection's protocol state: its user (after hello) and its rooms."""

    def __init__(self, seqs: Seqs, node: str = "raw") -> None:
        self.seqs, self.node = seqs, node
        self.user: str | None = None
        self.joined: set[str] = set()

    def receive(self, frame: Frame) -> Outcome:
        kind = frame.get("type")
        if self.user is None:
            if kind != "hello":
                return Outcome(close=4001)
            self.user = str(frame.get("token"))
            welcome = reply(
                frame, "welcome", user=self.user, session="s", node=self.node, heartbeat=0
            )
            return Outcome(replies=[welcome])
        if kind == "send" and frame.get("room") in self.joined:
            room, seq, ts = frame["room"], self.seqs.next(frame["room"]), int(time.time() * 1000)
            message = {
                "type": "message",
                "room": room,
                "seq": seq,
                "id": frame["id"],
                "from": self.user,
                "body": frame["body"],
                "ts": ts,
            }
            ack = reply(frame, "ack", room=room, id=frame["id"], seq=seq, ts=ts)
            return Outcome(replies=[ack], broadcast=(room, message))
        if kind == "join":
            room = frame["room"]
            self.joined.add(room)
            seq = self.seqs.last.get(room, 0)
            joined = reply(frame, "joined", room=room, seq=seq, presence=[], recovered=True)
            return Outcome(enter=room, replies=[joined])
        if kind == "leave":
            self.joined.discard(frame["room"])
            return Outcome(exit=frame["room"], replies=[reply(frame, "left", room=frame["room"])])
        if kind == "ping":
            return Outcome(replies=[reply(frame, "pong")])
        return Outcome(replies=[reply(frame, "error", code="bad_request", message="unsupported")])


def parse_args(doc: str | None, **extra: Any) -> Any:
    """`--host` and `--port` as for raw_aiohttp.py, plus the peer's own flags."""
    import argparse

    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    for flag, options in extra.items():
        parser.add_argument("--" + flag.replace("_", "-"), **options)
    return parser.parse_args()


def use_uvloop() -> bool:
    """Install uvloop's event loop policy when uvloop is importable."""
    import asyncio

    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True
