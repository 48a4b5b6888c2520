"""The SDK's WebSocket bookkeeping, free of I/O: calls awaiting answers, resume cursors, pacing."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl
import time
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson

from hubbub.client.http import HubbubError


class ConnectionLost(Exception):
    """The WebSocket went away while a call bound to that connection waited."""


@dataclass(frozen=True)
class End:
    """The last item of the event queue: the client stopped (with an error, unless closed)."""

    error: HubbubError | None


@dataclass(eq=False)
class Call:
    """A frame waiting for its answer."""

    frame: dict[str, Any]
    future: asyncio.Future[dict[str, Any]]
    # A resumable call is resent after a reconnect or an `unavailable` answer (every user call is
    # idempotent: join, leave, send with its id, history, ping); the re-joins made while
    # reconnecting are bound to their connection instead.
    resumable: bool
    generation: int = -1  # the connection it was last written to; -1 means "write it again"
    attempts: int = 0
    resent: bool = False  # written again after a reconnect
    retry_at: float = 0.0  # loop time before which it is not written again


class RoomCursors:
    """The joined rooms and the last `seq` seen in each: what to re-join with, what is a repeat."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def joined(self, request: dict[str, Any], frame: dict[str, Any]) -> None:
        """Take a `joined` answer (before any message that follows it)."""
        room, seq, since = frame.get("room"), frame.get("seq"), request.get("since")
        if not isinstance(room, str) or not isinstance(seq, int):
            return
        if frame.get("recovered") is False:
            self.last[room] = seq  # a gap nothing will replay: the caller pages the history
        elif room not in self.last:
            self.last[room] = since if isinstance(since, int) else seq
        elif isinstance(since, int):  # a re-join: what was already seen stays a repeat
            self.last[room] = max(since, self.last[room])

    def fresh(self, frame: dict[str, Any]) -> bool:
        """Whether an unsolicited frame is new; an entry of the room's log (a `message` or
        an `update`: both take a seq) moves its room's cursor."""
        room, kind = frame.get("room"), frame.get("type")
        if not isinstance(room, str):
            return True
        if kind == "left":
            self.last.pop(room, None)  # kicked, banned or left over HTTP
        seq = frame.get("seq")
        if kind in ("message", "update") and room in self.last and isinstance(seq, int):
            if seq <= self.last[room]:
                return False  # seen before: replayed after a reconnect or a re-join
            self.last[room] = seq
        return True


class Pacer:
    """A token bucket (bursts of twice the rate); a rate of 0 never waits."""

    def __init__(self, rate: float) -> None:
        self.rate, self.tokens, self.stamp = rate, 2 * rate, time.monotonic()

    async def take(self) -> None:
        while self.rate > 0:
            now = time.monotonic()
            self.tokens = min(2 * self.rate, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


def parse_frame(data: str | bytes) -> dict[str, Any] | None:
    """A server frame, or None for anything that is not a JSON object."""
    frame: Any = None
    with contextlib.suppress(orjson.JSONDecodeError):
        frame = orjson.loads(data)
    return frame if isinstance(frame, dict) else None


def parse_welcome(data: str) -> dict[str, Any]:
    """The `welcome` frame answering hello; raises `HubbubError` for anything else."""
    frame = parse_frame(data)
    if frame is not None:
        if frame.get("type") == "error":
            raise HubbubError.from_frame(frame)
        if (
            frame.get("type") == "welcome"
            and all(isinstance(frame.get(key), str) for key in ("user", "session", "node"))
            and isinstance(frame.get("heartbeat"), int | float)
        ):
            return frame
    raise HubbubError("internal", f"expected welcome, got {data[:200]!r}")


# Why the server closed a connection, by close code, as the reason of a `disconnected` event.
_CLOSED: Final = {
    1000: "the server closed the connection",
    1001: "the server is going away (restarting, or draining for maintenance)",
    1008: "the server closed the connection for flooding (too many frames too fast)",
    1009: "the server closed the connection: a frame was over its size limit",
    1011: "the server closed the connection after an internal error",
    1012: "the server is restarting",
    1013: "the server is overloaded: try again later",
    4001: "the server refused the token: log in again",
}

_ERRNO: Final = {
    errno.ECONNREFUSED: "connection refused (is the server running, on that port?)",
    errno.ECONNRESET: "the connection was reset",
    errno.EHOSTUNREACH: "no route to the host",
    errno.ENETUNREACH: "the network is unreachable",
    errno.ETIMEDOUT: "timed out",
}


def close_reason(code: int | None) -> str:
    """A sentence for a lost WebSocket: what its close code means."""
    if code is None or code == 1006:
        return "the connection was lost"
    return _CLOSED.get(code, f"the server closed the connection (close code {code})")


def unreachable(url: str, error: BaseException) -> str:
    """`cannot reach URL: CAUSE`, for an error of aiohttp (or the OS) on the way to the server.

    aiohttp's own words ("Cannot connect to host h:p ssl:default [...]") name TLS even for an
    http:// URL and hide the cause in brackets; this names the URL the caller gave, and the cause.
    """
    return f"cannot reach {url}: {_cause(error)}"


def _cause(error: BaseException) -> str:
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return f"its TLS certificate is not trusted ({error.certificate_error})"
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return "no such host (the name does not resolve)"
    if isinstance(error, aiohttp.ClientSSLError | ssl.SSLError):
        return f"the TLS handshake failed ({getattr(error, 'reason', None) or error})"
    if isinstance(error, aiohttp.WSServerHandshakeError):
        return f"it answered HTTP {error.status} where a WebSocket was expected"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the server closed the connection before answering"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, aiohttp.ClientConnectorError):
        error = error.os_error
    if isinstance(error, OSError):
        if error.errno in _ERRNO:
            return _ERRNO[error.errno]
        if error.strerror:
            return error.strerror[0].lower() + error.strerror[1:]
    if isinstance(error, ConnectionLost):
        return str(error)
    return str(error) or type(error).__name__
