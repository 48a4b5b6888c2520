"""Wire frames as typed structs: parsing and validating client frames, encoding server frames
(built by `events`).

No I/O here: bytes or text in, structs or errors out, so the whole protocol can be
tested without sockets.
"""

from __future__ import annotations

import json
import re
import struct
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Annotated, Any, Final

import msgspec
import orjson

from hubbub.protocol import rules
from hubbub.protocol.errors import BadRequest, ProtocolError, TooLarge
from hubbub.protocol.rules import (
    HISTORY_MAX_LIMIT,
    PASSWORD_MAX,
    PASSWORD_MIN,
    ROOM_RE,
    USERNAME_RE,
)

HISTORY_DEFAULT_LIMIT: Final = 50

Ref = Annotated[str, msgspec.Meta(max_length=64)]
RoomName = Annotated[str, msgspec.Meta(pattern=ROOM_RE.pattern)]
MessageId = Annotated[str, msgspec.Meta(pattern=r"\A[A-Za-z0-9_.:-]{1,64}\Z")]
SEQ_MAX: Final = 2**63 - 1  # what the databases store
Seq = Annotated[int, msgspec.Meta(ge=0, le=SEQ_MAX)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=HISTORY_MAX_LIMIT)]
Body = Annotated[str, msgspec.Meta(min_length=1)]


class Frame(msgspec.Struct, tag_field="type"):
    """Base of every client frame: `ref` is echoed on the reply."""

    ref: Ref | None = None


class Hello(Frame, tag="hello", kw_only=True):
    token: str


class Join(Frame, tag="join", kw_only=True):
    room: RoomName
    since: Seq | None = None


class Leave(Frame, tag="leave", kw_only=True):
    room: RoomName


class Send(Frame, tag="send", kw_only=True):
    room: RoomName
    id: MessageId
    body: Body
    reply_to: Seq | None = None  # the message this one answers
    thread: Seq | None = None  # the root of the thread this one is in


class Edit(Frame, tag="edit", kw_only=True):
    room: RoomName
    id: MessageId
    target: Seq
    body: Body


class Delete(Frame, tag="delete", kw_only=True):
    room: RoomName
    id: MessageId
    target: Seq


class React(Frame, tag="react", kw_only=True):
    room: RoomName
    id: MessageId
    target: Seq
    key: str


class Unreact(Frame, tag="unreact", kw_only=True):
    room: RoomName
    id: MessageId
    target: Seq
    key: str


# The frames that append an update to a room's log (the rate limits count them as sends).
UPDATES: Final = (Edit, Delete, React, Unreact)


class History(Frame, tag="history", kw_only=True):
    room: RoomName
    before: Seq | None = None
    after: Seq | None = None
    limit: Limit = HISTORY_DEFAULT_LIMIT
    thread: Seq | None = None  # page that thread (its root, then its replies)


class Typing(Frame, tag="typing", kw_only=True):
    room: RoomName


class Ping(Frame, tag="ping"):
    pass


ClientFrame = (
    Hello | Join | Leave | Send | Edit | Delete | React | Unreact | History | Typing | Ping
)

_decoder: Final = msgspec.json.Decoder(ClientFrame)
FRAME_TYPES: Final = tuple(str(kind.__struct_config__.tag) for kind in ClientFrame.__args__)
TYPE_RULE: Final = "a frame's type is one of " + ", ".join(FRAME_TYPES)
NOT_A_FRAME: Final = 'a frame is one JSON object with a "type", such as {"type": "ping"}'
_AT: Final = re.compile(r" - at `\$\.([A-Za-z_]+)")
_MISSING: Final = re.compile(r"missing required field `([A-Za-z_]+)`")


class FrameError(Exception):
    """A client frame that could not be accepted, with the `ref` it carried (if readable)."""

    def __init__(self, error: ProtocolError, ref: str | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.ref = ref


def _valid_ref(ref: object) -> str | None:
    if not isinstance(ref, str) or len(ref) > 64:
        return None
    try:
        ref.encode()  # a lone surrogate (read from a \ud800 escape) cannot be sent back
    except UnicodeEncodeError:
        return None
    return ref


def _salvage_ref(data: str | bytes) -> str | None:
    """Best effort: the `ref` of a frame that failed validation, if it is itself valid."""
    try:
        obj = orjson.loads(data)
    except (orjson.JSONDecodeError, RecursionError, UnicodeError):
        return _scan_ref(data)
    return _valid_ref(obj.get("ref")) if isinstance(obj, dict) else None


def _escaped_ref(data: str | bytes) -> str | None:
    """The `ref` of JSON that msgspec refuses only for an escaped lone surrogate (`\\ud800`:
    valid JSON, not valid text), which the standard library's parser reads; None for text
    that is not JSON at all."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return _valid_ref(obj.get("ref")) if isinstance(obj, dict) else None


def _scan_ref(data: str | bytes) -> str | None:
    """The top-level `ref` of a JSON object too deep (or too odd) for the parsers.

    A hostile frame nested thousands of levels deep still gets its `ref` echoed; this
    walks the text without recursion, reading strings with the stdlib's C scanner.
    """
    try:
        text = data.decode() if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        return None
    depth, key, expect_key, i = 0, None, False, 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            try:
                value, i = scanstring(text, i + 1)
            except ValueError:
                return None
            if depth == 1 and expect_key:
                key, expect_key = value, False
            elif depth == 1 and key == "ref":
                return _valid_ref(value)
            continue
        if ch in "{[":
            depth += 1
            expect_key = depth == 1 and ch == "{"
        elif ch in "}]":
            depth -= 1
        elif ch == "," and depth == 1:
            expect_key, key = True, None
        i += 1
    return None


def parse_frame(data: str | bytes, max_body: int) -> ClientFrame:
    """Parse and validate one client frame; raises FrameError carrying the protocol error.

    The gateway passes text its WebSocket layer already checked as UTF-8; bytes are
    checked here, whole, since the JSON decoder skips unknown fields without looking.
    """
    try:
        if isinstance(data, bytes):
            data = data.decode()
        frame: ClientFrame = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise FrameError(BadRequest(_explain(exc, _fields(data))), _salvage_ref(data)) from None
    except msgspec.DecodeError as exc:
        # Valid JSON that is not valid text (an escaped lone surrogate, `\ud800`) lands
        # here too: its `ref` is still echoed when it can be read.
        raise FrameError(BadRequest(f"not a JSON object: {exc}"), _escaped_ref(data)) from None
    except RecursionError:
        raise FrameError(BadRequest("the frame is nested too deeply"), _scan_ref(data)) from None
    except UnicodeError:
        raise FrameError(BadRequest("the frame is not valid UTF-8 text"), None) from None
    if isinstance(frame, (Send, Edit)):
        if len(frame.body) > max_body:
            over = len(frame.body) - max_body
            message = f"a message is at most {max_body} characters; this one is {over} over"
            raise FrameError(TooLarge(message), frame.ref)
        if (problem := rules.body_problem(frame.body)) is not None:
            raise FrameError(BadRequest(problem), frame.ref)
    elif isinstance(frame, (React, Unreact)) and (problem := rules.key_problem(frame.key)):
        raise FrameError(BadRequest(problem), frame.ref)
    return frame


def _explain(exc: msgspec.ValidationError, data: object) -> str:
    """The rule a refused frame broke, in words (`rules`), from msgspec's error and the
    decoded frame (a dict when it was a JSON object)."""
    text = str(exc)
    fields = data if isinstance(data, dict) else {}
    if (at := _AT.search(text)) is not None:
        field = at.group(1)
        if field == "type":
            return f"unknown frame type {str(fields.get('type'))[:32]!r}: {TYPE_RULE}"
        return rules.field_rule(field, fields.get(field))
    if (missing := _MISSING.search(text)) is not None:
        field = missing.group(1)
        if field == "type":
            return NOT_A_FRAME
        kind = fields.get("type")
        known = isinstance(kind, str) and kind in FRAME_TYPES
        what = f"{'an' if str(kind)[:1] in 'aeiou' else 'a'} {kind} frame" if known else "this"
        return f"{what} needs {field}: {rules.field_rule(field)}"
    return NOT_A_FRAME if not fields else "the frame's fields do not fit its type"


def _fields(data: str | bytes) -> object:
    """The refused frame as decoded JSON, for the words of its error (None if it is not
    even that)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def encode(frame: dict[str, Any]) -> bytes:
    """The one place server frames become JSON."""
    return orjson.dumps(frame)


def ws_text_frame(payload: bytes) -> bytes:
    """A complete unmasked WebSocket text frame (RFC 6455 section 5.2) for server-to-client use.

    Server frames are never masked, so one encoded frame serves every recipient: the
    fan-out path builds it once per message and writes the same bytes to each socket.
    """
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def valid_username(name: str) -> bool:
    return USERNAME_RE.match(name) is not None


def valid_room_name(name: str) -> bool:
    return ROOM_RE.match(name) is not None


def valid_password(password: str) -> bool:
    return PASSWORD_MIN <= len(password) <= PASSWORD_MAX
