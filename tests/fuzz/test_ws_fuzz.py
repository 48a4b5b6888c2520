"""Hostile WebSocket input against one live server: generated frames never break it.

Hypothesis generates frames of every client type (protocol v2's updates too) with each
field valid, ill-typed, out of range, huge or odd (unicode, escapes of lone surrogates,
deep nesting), random JSON, text that is not JSON, binary frames, text frames that are
not UTF-8 and frames over the size limit. Properties, for every answer: each server
frame is a frame of the spec, each error carries a spec code (never `internal`) and a
message that reveals nothing of the inside; every frame with a valid `ref` gets exactly
one reply carrying it (at most one for what appends to a room's log and for `typing`,
whose ack or silence may come later) and no reply carries a ref that was never sent; the
connection stays open, or closes with the close code the spec gives for what was sent
(1007 not UTF-8, 1009 too big, 4001 before hello). After each test the `guard` fixture
(conftest.py) checks the server is healthy, the canary can send, the messages acked
before the fuzz are unchanged and nothing was logged at level error.

The server runs with rate limits off (conftest.py says why). Runs are derandomized with
the example database off: the same examples every run. `pytest --hypothesis-show-
statistics` shows which replies the fuzz reached.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support.fuzzutil import SERVER_FRAME_TYPES, World, check_error_payload, name, open_ws, request

# A failing example holding a 64 KiB body is reported, not turned into a warning error.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
MAX_FRAME = 65536  # the default --max-frame
SETTINGS = settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one connection serves all the examples
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# --- strategies ----------------------------------------------------------------------------------

ROOM_SLOT = "<room>"  # filled in with one of the world's rooms (see `fill`)
TYPES = ["hello", "join", "leave", "send", "edit", "delete", "react", "unreact", "history"]
TYPES += ["typing", "ping"]
# Frames answered once durable, maybe after the batch's pong (acks may come a batch late).
APPENDING = ("send", "edit", "delete", "react", "unreact")

odd_text = st.one_of(
    st.text(max_size=80),
    st.text(st.characters(min_codepoint=0x80), max_size=40),  # beyond ASCII, astral too
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=4),
    st.sampled_from(["", " ", "\x00", "\u202e", "\ufeff", "a" * 65, "A", "r" * 64, "../x"]),
    st.integers(1, 9000).map(lambda n: "x" * n),
)
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    odd_text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
seq_value = st.one_of(
    st.integers(-3, 10),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), 2**64, 10**30]),
    json_value,
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "type": st.one_of(st.sampled_from(TYPES), st.sampled_from(["PING", "shout", ""]), json_value),
    "room": st.one_of(st.just(ROOM_SLOT), odd_text, json_value),
    "id": st.one_of(st.from_regex(r"\A[A-Za-z0-9_.:-]{1,64}\Z"), odd_text, json_value),
    "body": st.one_of(odd_text, json_value),
    "token": st.one_of(odd_text, json_value),
    "since": seq_value,
    "before": seq_value,
    "after": seq_value,
    "limit": st.one_of(st.integers(-2, 202), json_value),
    "ref": st.one_of(st.text(max_size=70), json_value),
    "target": seq_value,
    "reply_to": seq_value,
    "thread": seq_value,
    "key": st.one_of(odd_text, st.sampled_from(["👍", ":tada:", "👩\u200d💻", "a\u200b"])),
}
shaped_frame = st.fixed_dictionaries(
    {"type": FIELDS["type"]}, optional={k: v for k, v in FIELDS.items() if k != "type"}
)
room_choice = st.sampled_from(["public", "private", "banned", "missing", "bad"])
VALID: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "join": st.fixed_dictionaries(
        {"type": st.just("join"), "room": st.just(ROOM_SLOT)}, optional={"since": seq_value}
    ),
    "leave": st.just({"type": "leave", "room": ROOM_SLOT}),
    "send": st.fixed_dictionaries(
        {
            "type": st.just("send"),
            "room": st.just(ROOM_SLOT),
            "id": st.from_regex(r"\A[A-Za-z0-9_.:-]{1,64}\Z"),
            "body": st.text(min_size=1, max_size=50),
        }
    ),
    "history": st.fixed_dictionaries(
        {"type": st.just("history"), "room": st.just(ROOM_SLOT)},
        optional={"before": seq_value, "after": seq_value, "limit": st.integers(-1, 201)},
    ),
    **{
        kind: st.fixed_dictionaries(
            {
                "type": st.just(kind),
                "room": st.just(ROOM_SLOT),
                "id": st.from_regex(r"\A[A-Za-z0-9_.:-]{1,64}\Z"),
                "target": st.integers(0, 12),
                **extra,
            }
        )
        for kind, extra in (
            ("edit", {"body": st.text(min_size=1, max_size=50)}),
            ("delete", {}),
            ("react", {"key": st.text(min_size=1, max_size=3)}),
            ("unreact", {"key": st.text(min_size=1, max_size=3)}),
        )
    },
    "typing": st.just({"type": "typing", "room": ROOM_SLOT}),
    "ping": st.just({"type": "ping"}),
    "hello": st.fixed_dictionaries({"type": st.just("hello"), "token": odd_text}),
}


@st.composite
def mutated_frame(draw: st.DrawFn) -> dict[str, Any]:
    """A valid frame of some type with (maybe) one field replaced, dropped or added."""
    frame = dict(draw(st.sampled_from(sorted(VALID)).flatmap(VALID.__getitem__)))
    how = draw(st.sampled_from(["keep", "replace", "drop", "add"]))
    key = draw(st.sampled_from(sorted(FIELDS)))
    if how == "replace" or how == "add":
        frame[key] = draw(FIELDS[key])
    elif how == "drop":
        frame.pop(key, None)
    return frame


@dataclass(frozen=True)
class Action:
    """One thing sent: a JSON text (`frame`), raw text, raw bytes as text, or binary."""

    kind: str  # "frame" | "text" | "badutf8" | "binary"
    data: Any
    room: str = "public"


def encode(frame: Any) -> str:
    # ensure_ascii writes lone surrogates as \\udXXX escapes: valid UTF-8, odd JSON.
    return json.dumps(frame, ensure_ascii=True, allow_nan=True)


def deep_frame(depth: int, ref: str) -> str:
    """A ping nested `depth` levels deep, its `ref` after the nesting (read without parsing)."""
    nested = "[" * depth + "]" * depth
    return f'{{"type":"ping","a":{nested},"ref":{json.dumps(ref)}}}'


# Frames the connection survives, and the rarer ones the spec closes it for.
surviving = st.one_of(
    st.builds(Action, st.just("frame"), mutated_frame(), room_choice),
    st.builds(Action, st.just("frame"), mutated_frame(), st.just("public")),
    st.builds(Action, st.just("frame"), shaped_frame, room_choice),
    st.builds(Action, st.just("frame"), json_value, room_choice),
    st.builds(Action, st.just("text"), st.text(max_size=200)),
    st.builds(
        Action,
        st.just("text"),
        st.integers(1, 3000).map(lambda n: '{"type":"ping","ref":"deep",' + '"a":[' * n),
    ),
    st.builds(Action, st.just("text"), st.builds(deep_frame, st.integers(1, 3000), st.text())),
    st.builds(Action, st.just("binary"), st.binary(max_size=100)),
    st.builds(
        Action,
        st.just("frame"),
        st.integers(MAX_FRAME - 120, MAX_FRAME - 70).map(
            lambda n: {"type": "send", "room": ROOM_SLOT, "id": "big", "body": "b" * n}
        ),
    ),
)
closing = st.one_of(
    st.builds(Action, st.just("badutf8"), st.binary(min_size=1, max_size=40)),
    st.builds(
        Action,
        st.just("frame"),
        st.integers(MAX_FRAME - 45, MAX_FRAME + 40).map(
            lambda n: {"type": "send", "room": ROOM_SLOT, "id": "big", "body": "b" * n}
        ),
    ),
)
actions = st.one_of(surviving, closing)
# A batch of frames, and one in five ends with a frame that closes the connection.
batches = st.tuples(
    st.lists(surviving, min_size=1, max_size=6),
    st.one_of(st.none(), st.none(), st.none(), st.none(), closing),
).map(lambda t: t[0] if t[1] is None else [*t[0], t[1]])

# --- the client ----------------------------------------------------------------------------------


def fill(value: Any, room: str) -> Any:
    if isinstance(value, dict):
        return {k: fill(v, room) for k, v in value.items()}
    return room if value == ROOM_SLOT else value


def payload(action: Action, world: World) -> tuple[str | bytes, int]:
    """What goes on the wire and the opcode."""
    if action.kind == "frame":
        return encode(frame_of(action, world)[0]), aiohttp.WSMsgType.TEXT
    if action.kind == "text":
        return action.data, aiohttp.WSMsgType.TEXT
    if action.kind == "binary":
        return action.data, aiohttp.WSMsgType.BINARY
    data: bytes = action.data
    try:
        data.decode()
    except UnicodeDecodeError:
        return data, aiohttp.WSMsgType.TEXT
    return data + b"\xff", aiohttp.WSMsgType.TEXT  # never valid UTF-8


def frame_of(action: Action, world: World) -> tuple[Any, str | None]:
    """The JSON value of a `frame` action, with its room filled in, and its `ref` made
    unique when it is a valid one (a string of at most 64 characters), so the replies to
    it can be told apart; returns (value, that ref or None)."""
    rooms = {
        "public": world.public,
        "private": world.private,
        "banned": world.banned,
        "missing": name("missing"),
        "bad": "Not A Room",
    }
    value = fill(action.data, rooms[action.room])
    ref = value.get("ref") if isinstance(value, dict) else None
    if not isinstance(ref, str) or len(ref) > 64:
        return value, None
    ref = name("ref")
    return {**value, "ref": ref}, ref


def string_literals(text: str) -> set[str]:
    """The JSON string literals in `text`, decoded (a ref echoed must be one of them)."""
    found = set()
    for literal in re.findall(r'"(?:[^"\\]|\\.)*"', text):
        try:
            value = json.loads(literal)
        except ValueError:
            continue
        found.add(value)
    return found


def wire(data: str | bytes) -> bytes:
    return data.encode(errors="surrogatepass") if isinstance(data, str) else data


def closing_code(data: str | bytes, opcode: int) -> int | None:
    """The close code the spec gives for this frame whatever its content, if any.

    Over the size limit: 1009. A text frame that is not UTF-8: 1007.
    """
    if len(wire(data)) > MAX_FRAME:
        return 1009
    if opcode == aiohttp.WSMsgType.TEXT and isinstance(data, bytes):
        return 1007
    return None


class Fuzzer:
    """One connection (after hello), reopened when the server closed it for a good reason."""

    def __init__(self, http: aiohttp.ClientSession, world: World) -> None:
        self.http = http
        self.world = world
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.sent: dict[str, Any] = {}  # every unique ref sent -> the `type` of its frame
        self.wire_of: dict[str, str] = {}  # and the text of that frame
        self.strings: set[str] = set()  # every string literal in any text sent

    async def connection(self) -> aiohttp.ClientWebSocketResponse:
        if self.ws is None or self.ws.closed:
            self.ws = await open_ws(self.http, self.world.ws_url, self.world.tokens["fuzzer"])
            await request(self.ws, {"type": "join", "room": self.world.public}, "joined")
        return self.ws

    async def run(self, batch: list[Action]) -> None:
        """Send the batch, then a ping; every frame up to the pong is checked.

        A frame the spec closes the connection for ends the batch: the close must come,
        with its code, and nothing more is sent (data arriving after the server closed
        makes the kernel reset the connection, and the reset can eat the close frame).
        """
        ws = await self.connection()
        try:
            await self._run(ws, batch)
        except BaseException:
            self.ws = None  # the next example starts on a clean connection
            await ws.close()
            raise

    async def _run(self, ws: aiohttp.ClientWebSocketResponse, batch: list[Action]) -> None:
        answered: dict[str, int] = {}  # ref -> replies carrying it, for frames that have one
        for action in batch:
            if action.kind == "frame":
                value, ref = frame_of(action, self.world)
                data, opcode = encode(value), aiohttp.WSMsgType.TEXT
                if ref is not None:
                    answered[ref] = 0
                    self.sent[ref] = value.get("type")
                    self.wire_of[ref] = data
            else:
                data, opcode = payload(action, self.world)
            if isinstance(data, str):
                self.strings.update(string_literals(data))
            await ws.send_frame(wire(data), opcode)
            expected = closing_code(data, opcode)
            if expected is not None:
                self.ws = None
                await expect_close(ws, expected)
                return
        barrier = name("barrier")
        self.sent[barrier] = "ping"
        await ws.send_str(json.dumps({"type": "ping", "ref": barrier}))
        while True:
            frame = await read_frame(ws)
            assert frame is not None, f"closed with {ws.close_code} for {batch!r}"
            check_frame(frame)
            ref = frame.get("ref")
            if ref == barrier and frame["type"] == "pong":
                break
            if ref is not None:
                # A ref is only ever the one of a frame sent (acks may come a batch late).
                assert ref in self.sent or ref in self.strings, (frame, batch)
                if ref in answered:
                    answered[ref] += 1
        # Every frame with a valid ref got exactly one reply carrying it, in order before
        # the ping's pong; but what appends is acked when durable (maybe after the pong) and a
        # `typing` that works has no reply at all: at most one for those.
        for ref, count in answered.items():
            if self.sent[ref] in (*APPENDING, "typing"):
                assert count <= 1, (ref, count, batch)
            else:
                assert count == 1, (ref, count, self.sent[ref], batch)


async def read_frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any] | None:
    """The next text frame as JSON, or None once the server closed."""
    msg = await ws.receive(10.0)
    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
        return None
    assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
    frame: dict[str, Any] = json.loads(msg.data)
    return frame


async def expect_close(ws: aiohttp.ClientWebSocketResponse, expected: int) -> list[Any]:
    """Read (checking) the frames up to the server's close, whose code must be `expected`.

    A frame over the size limit may be cut short by a reset instead: the server closes
    with 1009 before reading the rest of the frame, and closing a socket with unread data
    makes the kernel reset it (the close frame may then never be read here).
    """
    frames = []
    while True:
        msg = await ws.receive(10.0)
        if msg.type == aiohttp.WSMsgType.CLOSE:
            assert msg.data == expected, (msg.data, msg.extra, frames)
            return frames
        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            assert expected == 1009, f"dropped without a close frame ({expected} expected)"
            return frames
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
        frame = json.loads(msg.data)
        frames.append(frame)


def check_frame(frame: Any) -> None:
    assert isinstance(frame, dict), frame
    # What the fuzz reached: see `pytest --hypothesis-show-statistics`.
    event(f"reply {frame.get('type')} {frame.get('code', '')}".strip())
    if frame.get("type") == "error":
        check_error_payload(frame, "error frame")
        assert frame["code"] != "unauthorized", frame  # after hello, nothing sent revokes it
    else:
        assert frame.get("type") in SERVER_FRAME_TYPES, frame
    ref = frame.get("ref")
    assert ref is None or (isinstance(ref, str) and len(ref) <= 64), frame


# --- the tests -----------------------------------------------------------------------------------


@pytest.fixture
async def fuzzer(http: aiohttp.ClientSession, world: World) -> Any:
    fuzzer = Fuzzer(http, world)
    yield fuzzer
    if fuzzer.ws is not None:
        await fuzzer.ws.close()


@SETTINGS
@given(batch=batches)
async def test_frames_after_hello_never_break_the_connection_or_the_server(
    fuzzer: Fuzzer, batch: list[Action]
) -> None:
    await fuzzer.run(batch)


@settings(SETTINGS, max_examples=150)
@given(action=actions)
async def test_any_first_frame_but_a_good_hello_is_unauthorized_and_4001(
    http: aiohttp.ClientSession, world: World, action: Action
) -> None:
    ws = await http.ws_connect(world.ws_url, max_msg_size=0)
    try:
        data, opcode = payload(action, world)
        await ws.send_frame(wire(data), opcode)
        frames = await expect_close(ws, closing_code(data, opcode) or 4001)
        for frame in frames:
            assert frame.get("type") == "error", frame
            assert check_error_payload(frame, "before hello") == "unauthorized", frame
        if closing_code(data, opcode) is None:
            assert len(frames) == 1, frames
    finally:
        await ws.close()


# --- lone surrogates (found by this fuzz) ------------------------------------------------------


async def test_deep_frame_whose_ref_is_a_lone_surrogate_gets_bad_request(
    http: aiohttp.ClientSession, world: World
) -> None:
    """Too deep for the parser, so the ref is read by scanning, and `\\ud800` becomes a lone
    surrogate that cannot be encoded back into the error frame: it is not echoed, and the
    answer is `bad_request` (it was `internal` and a 1011 close)."""
    ws = await open_ws(http, world.ws_url, world.tokens["fuzzer"])
    try:
        await ws.send_str(deep_frame(5000, "\ud800"))
        frame = await read_frame(ws)
        assert frame is not None and frame["code"] == "bad_request", frame
        assert "ref" not in frame, frame  # not a ref that can be echoed
    finally:
        await ws.close()


async def test_frame_with_an_escaped_lone_surrogate_gets_bad_request_with_its_ref(
    http: aiohttp.ClientSession, world: World
) -> None:
    """A JSON object with a valid ref and `\\ud800` in another field: msgspec calls the text
    malformed, and the `bad_request` still carries the ref the frame carried
    (docs/protocol.md: errors carry the ref "even when the rest of the frame was invalid")."""
    ws = await open_ws(http, world.ws_url, world.tokens["fuzzer"])
    try:
        await ws.send_str('{"type":"join","room":"\\ud800","ref":"r1"}')
        frame = await read_frame(ws)
        assert frame == {**(frame or {}), "type": "error", "code": "bad_request", "ref": "r1"}
    finally:
        await ws.close()
