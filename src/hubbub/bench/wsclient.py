"""A lean asyncio WebSocket client protocol for the load generator.

The load generator has one CPU core for up to a few hundred thousand frames a
second, so it parses server frames straight out of `data_received` (many
frames per read, no task or await per frame) instead of going through a
general-purpose client. Only what the benchmark needs is implemented: the
upgrade handshake (over TLS too), unfragmented and fragmented text frames,
ping/pong and the closing handshake.

Two dialects carry the same JSON objects: `hubbub` (one object per text frame
on `/ws`) and `socketio` (Engine.IO v4 over the websocket transport only, on
`/socket.io/?EIO=4&transport=websocket`: the client answers the open packet
`0{...}` with `40`, waits for the namespace's `40{...}`, answers pings `2`
with `3`; every object travels as an event named after its `type`,
`42["<type>",{...}]`).
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
from collections.abc import Callable
from typing import Literal, NamedTuple, cast

# RFC 6455 asks clients for an unpredictable masking key to protect
# intermediaries; on loopback against our own servers a zero key is fine and
# spares the load generator an XOR per byte. Servers unmask either way.
_ZERO_MASK = b"\x00\x00\x00\x00"
_OP_CONT, _OP_TEXT, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x8, 0x9, 0xA

TextHandler = Callable[[bytes], None]
Dialect = Literal["hubbub", "socketio"]
DIALECTS: tuple[Dialect, ...] = ("hubbub", "socketio")
SOCKETIO_PATH = "/socket.io/?EIO=4&transport=websocket"


class Endpoint(NamedTuple):
    """Where the load generator connects, and how (picklable: it goes to worker processes)."""

    host: str
    port: int
    path: str = "/ws"  # the request target of the upgrade
    tls: bool = False
    verify: bool = True  # check the server's TLS certificate
    dialect: Dialect = "hubbub"

    @classmethod
    def local(cls, port: int) -> Endpoint:
        """A hubbub node on this machine (the benchmark harness's servers)."""
        return cls("127.0.0.1", port)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context()
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    @property
    def message_prefix(self) -> bytes:
        """How a `message` frame starts when the server writes compact JSON, `type` first."""
        return b'42["message",' if self.dialect == "socketio" else b'{"type":"message"'


class HandshakeError(ConnectionError):
    """The server did not answer the upgrade with 101 Switching Protocols."""


def encode_frame(payload: bytes, opcode: int = _OP_TEXT) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        header = bytes((first, 0x80 | n))
    elif n < 65536:
        header = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + _ZERO_MASK + payload


class WebSocketClient(asyncio.Protocol):
    """One client connection; text frames go to `on_text` as raw JSON bytes.

    Frames that start with `fast_prefix` are only counted in `fast_count` (and
    handed to `on_fast` when one is set): the load generator's cheapest path
    for the bulk of a fan-out.
    """

    def __init__(self, host: str, port: int, path: str = "/ws", socketio: bool = False) -> None:
        self.on_text: TextHandler = _ignore
        self.fast_prefix: bytes | None = None
        self.fast_count = 0
        self.on_fast: TextHandler | None = None
        self.close_code: int | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n\r\n"
        ).encode()
        self._transport: asyncio.Transport | None = None
        self._buf = b""
        self._upgraded = False
        self._fragments: list[bytes] = []
        self._socketio = socketio

    @classmethod
    async def connect(
        cls, endpoint: Endpoint, context: ssl.SSLContext | None = None
    ) -> WebSocketClient:
        """Open a connection; `opened` (awaited here) is the upgrade, or Socket.IO's connect."""
        loop = asyncio.get_running_loop()
        host, port, path = endpoint.host, endpoint.port, endpoint.path
        socketio = endpoint.dialect == "socketio"
        _, proto = await loop.create_connection(
            lambda: cls(host, port, path, socketio),
            host,
            port,
            ssl=context,
            server_hostname=host if context is not None else None,
        )
        await proto.opened
        return proto

    @property
    def is_open(self) -> bool:
        return self._upgraded and not self.lost.done()

    def frame(self, kind: str, payload: bytes) -> bytes:
        """The encoded frame that carries one JSON object of type `kind` in this dialect."""
        if self._socketio:
            return encode_frame(b'42["' + kind.encode() + b'",' + payload + b"]")
        return encode_frame(payload)

    def send_object(self, kind: str, payload: bytes) -> None:
        """Send one JSON object (`payload`, of type `kind`)."""
        self.send_raw(self.frame(kind, payload))

    def send_text(self, payload: bytes) -> None:
        """Send one raw text frame (no dialect framing)."""
        self.send_raw(encode_frame(payload))

    def send_raw(self, frames: bytes) -> None:
        """Write already-encoded frames (several sends in one system call)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(frames)

    def close(self, code: int = 1000) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        if self._upgraded:
            self._transport.write(encode_frame(code.to_bytes(2, "big"), _OP_CLOSE))
        self._transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionResetError("closed during handshake"))
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buf = buf
                return
            status = buf[: buf.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                self.opened.set_exception(HandshakeError(status.decode(errors="replace")))
                assert self._transport is not None
                self._transport.close()
                return
            self._upgraded = True
            if not self._socketio:  # Socket.IO is open once the namespace answers
                self.opened.set_result(None)
            buf = buf[end + 4 :]
        self._buf = self._parse_frames(buf)

    def _parse_frames(self, buf: bytes) -> bytes:
        """Handle every complete frame in `buf`; return the incomplete rest."""
        pos, size, prefix = 0, len(buf), self.fast_prefix
        while size - pos >= 2:
            b0, length = buf[pos], buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length, start = (buf[pos + 2] << 8) | buf[pos + 3], pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            end = start + length
            if end > size:
                break
            opcode = b0 & 0x0F
            if opcode == _OP_TEXT and b0 & 0x80:
                if prefix is not None and buf.startswith(prefix, start):
                    self.fast_count += 1
                    if self.on_fast is not None:
                        self.on_fast(buf[start:end])
                elif self._socketio:
                    self._engineio(buf[start:end])
                else:
                    self.on_text(buf[start:end])
            else:
                self._control_or_fragment(b0, opcode, buf[start:end])
            pos = end
        return buf[pos:]

    def _control_or_fragment(self, b0: int, opcode: int, payload: bytes) -> None:
        if opcode in (_OP_TEXT, _OP_CONT):
            self._fragments.append(payload)
            if b0 & 0x80:
                message, self._fragments = b"".join(self._fragments), []
                if self._socketio:
                    self._engineio(message)
                else:
                    self.on_text(message)
        elif opcode == _OP_PING and self._transport is not None:
            self._transport.write(encode_frame(payload, _OP_PONG))
        elif opcode == _OP_CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close(1000 if self.close_code in (1005, 1006, 1015) else self.close_code)

    def _engineio(self, packet: bytes) -> None:
        """One Engine.IO packet: events go to `on_text` as the bare JSON object."""
        if packet.startswith(b"42["):
            # 42["<event>",{...}]: the object starts after the event name's comma.
            comma = packet.find(b",", 4)
            if comma > 0:
                self.on_text(packet[comma + 1 : packet.rindex(b"]")].strip())
        elif packet == b"2":
            self.send_text(b"3")
        elif packet.startswith(b"0"):  # the open packet: connect to the namespace "/"
            self.send_text(b"40")
        elif packet.startswith(b"40"):
            if not self.opened.done():
                self.opened.set_result(None)
        elif packet.startswith(b"44"):  # the namespace refused the connection
            if not self.opened.done():
                self.opened.set_exception(HandshakeError(f"socket.io: {packet.decode()}"))
            self.close()
        elif packet.startswith((b"41", b"1")):  # disconnected by the server
            self.close_code = 1000
            self.close()


def _ignore(payload: bytes) -> None:
    pass
