"""The wire protocol without sockets: client frames in, typed structs or protocol errors out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hubbub.protocol.errors import BadRequest, Conflict, RateLimited
from hubbub.protocol.events import error_frame
from hubbub.protocol.frames import (
    FrameError,
    Hello,
    History,
    Join,
    Leave,
    Ping,
    Send,
    Typing,
    encode,
    parse_frame,
    valid_password,
    valid_room_name,
    valid_username,
    ws_text_frame,
)

MAX_BODY = 4000
ID_CHARS = "ABCXYZabcxyz0189_.:-"


def parse(frame: Any, max_body: int = MAX_BODY) -> Any:
    """Parse a frame given as a JSON-able object (encoded here) or as raw text/bytes."""
    data = frame if isinstance(frame, (str, bytes)) else json.dumps(frame)
    return parse_frame(data, max_body)


def rejected(frame: Any, max_body: int = MAX_BODY) -> FrameError:
    with pytest.raises(FrameError) as info:
        parse(frame, max_body)
    return info.value


# Every client frame type


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"type": "hello", "token": "t0k3n"}, Hello(token="t0k3n")),
        ({"type": "join", "room": "lobby"}, Join(room="lobby")),
        ({"type": "join", "room": "lobby", "since": 0}, Join(room="lobby", since=0)),
        ({"type": "join", "room": "lobby", "since": 41}, Join(room="lobby", since=41)),
        ({"type": "leave", "room": "lobby"}, Leave(room="lobby")),
        (
            {"type": "send", "room": "lobby", "id": "m-1", "body": "hi"},
            Send(room="lobby", id="m-1", body="hi"),
        ),
        ({"type": "history", "room": "lobby"}, History(room="lobby")),
        (
            {"type": "history", "room": "lobby", "before": 9, "after": 2, "limit": 3},
            History(room="lobby", before=9, after=2, limit=3),
        ),
        ({"type": "typing", "room": "lobby"}, Typing(room="lobby")),
        ({"type": "ping"}, Ping()),
    ],
    ids=lambda v: v["type"] if isinstance(v, dict) else "",
)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["text", "bytes"])
def test_every_client_frame_type_parses_to_its_struct(
    frame: dict[str, Any], expected: Any, as_bytes: bool
) -> None:
    data = json.dumps(frame)
    parsed = parse_frame(data.encode() if as_bytes else data, MAX_BODY)
    assert type(parsed) is type(expected)
    assert parsed == expected
    assert parsed.ref is None


def test_history_defaults_to_no_bounds_and_a_limit_of_50() -> None:
    parsed = parse({"type": "history", "room": "lobby"})
    assert (parsed.before, parsed.after, parsed.limit) == (None, None, 50)


# ref


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "hello", "token": "t"},
        {"type": "join", "room": "lobby"},
        {"type": "leave", "room": "lobby"},
        {"type": "send", "room": "lobby", "id": "1", "body": "b"},
        {"type": "history", "room": "lobby"},
        {"type": "typing", "room": "lobby"},
        {"type": "ping"},
    ],
    ids=lambda f: f["type"],
)
def test_ref_is_kept_on_every_frame_type(frame: dict[str, Any]) -> None:
    assert parse({**frame, "ref": "req-7"}).ref == "req-7"


@pytest.mark.parametrize(
    "ref", ["", " spaces and ünïcödé ", "x" * 64, "😀" * 64, '{"type":"ping"}']
)
def test_any_string_of_up_to_64_characters_is_a_valid_ref(ref: str) -> None:
    assert parse({"type": "ping", "ref": ref}).ref == ref


def test_ref_over_64_characters_is_bad_request_and_not_echoed() -> None:
    error = rejected({"type": "ping", "ref": "x" * 65})
    assert error.error.code == "bad_request"
    assert error.ref is None


@pytest.mark.parametrize("ref", [7, True, ["r"], {"r": 1}])
def test_ref_that_is_not_a_string_is_bad_request(ref: Any) -> None:
    error = rejected({"type": "ping", "ref": ref})
    assert error.error.code == "bad_request"
    assert error.ref is None


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "shout", "ref": "r1"},
        {"ref": "r1"},
        {"type": "join", "ref": "r1"},
        {"type": "join", "ref": "r1", "room": "Not A Room"},
        {"type": "send", "ref": "r1", "room": "lobby", "id": "m1", "body": ""},
        {"type": "send", "ref": "r1", "room": "lobby", "id": "no spaces", "body": "b"},
        {"type": "history", "ref": "r1", "room": "lobby", "limit": 0},
        {"type": "join", "ref": "r1", "room": "lobby", "since": -1},
        {"type": "hello", "ref": "r1", "token": 5},
    ],
    ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items() if k != "ref") or "no-type",
)
def test_a_valid_ref_is_salvaged_from_an_otherwise_invalid_frame(frame: dict[str, Any]) -> None:
    error = rejected(frame)
    assert error.error.code == "bad_request"
    assert error.ref == "r1"


def test_frame_that_is_not_json_carries_no_ref() -> None:
    assert rejected(b'{"type": "ping", "ref": "r1"').ref is None


# bad_request: every case of the spec's error table

ALL_FRAMES = ["hello", "join", "leave", "send", "history", "typing", "ping"]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   ",
        b"not json",
        b"{",
        b"{'type': 'ping'}",
        b'{"type": "ping"} trailing',
        b'{"type": "ping",}',
        b"\xff\xfe",
        "NaN",
    ],
)
def test_input_that_is_not_json_is_bad_request(data: str | bytes) -> None:
    assert rejected(data).error.code == "bad_request"


@pytest.mark.parametrize(
    "data",
    [
        b'{"type": "ping", "ref": "\xc3"}',
        b'{"type": "send", "room": "lobby", "id": "m1", "body": "caf\xe9"}',
        b'{"type": "ping", "x": "\xed\xa0\x80"}',
    ],
    ids=["truncated-sequence", "latin1-byte", "encoded-surrogate"],
)
def test_bytes_that_are_not_utf8_inside_a_json_string_are_bad_request(data: bytes) -> None:
    """parse_frame takes bytes too: invalid UTF-8 anywhere is a FrameError, never a
    UnicodeDecodeError escaping to the caller."""
    assert rejected(data).error.code == "bad_request"


@pytest.mark.parametrize("value", [None, True, 0, 1.5, "ping", [], [{"type": "ping"}]])
def test_json_that_is_not_an_object_is_bad_request(value: Any) -> None:
    assert rejected(value).error.code == "bad_request"


@pytest.mark.parametrize(
    "frame",
    [
        {},
        {"type": "shout"},
        {"type": "PING"},
        {"type": "welcome"},
        {"type": "message", "room": "lobby"},
        {"type": ""},
        {"type": None},
        {"type": 1},
        {"type": ["ping"]},
    ],
    ids=repr,
)
def test_missing_or_unknown_type_is_bad_request(frame: dict[str, Any]) -> None:
    assert rejected(frame).error.code == "bad_request"


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "hello"},
        {"type": "join"},
        {"type": "leave"},
        {"type": "send", "id": "m1", "body": "b"},
        {"type": "send", "room": "lobby", "body": "b"},
        {"type": "send", "room": "lobby", "id": "m1"},
        {"type": "history"},
        {"type": "typing"},
    ],
    ids=repr,
)
def test_missing_required_field_is_bad_request(frame: dict[str, Any]) -> None:
    assert rejected(frame).error.code == "bad_request"


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "hello", "token": 5},
        {"type": "hello", "token": None},
        {"type": "hello", "token": ["t"]},
        {"type": "join", "room": 5},
        {"type": "join", "room": None},
        {"type": "join", "room": ["lobby"]},
        {"type": "join", "room": "lobby", "since": "3"},
        {"type": "leave", "room": {"name": "lobby"}},
        {"type": "send", "room": "lobby", "id": 1, "body": "b"},
        {"type": "send", "room": "lobby", "id": "m1", "body": 5},
        {"type": "send", "room": "lobby", "id": "m1", "body": None},
        {"type": "send", "room": "lobby", "id": "m1", "body": ["b"]},
        {"type": "history", "room": "lobby", "before": "9"},
        {"type": "history", "room": "lobby", "limit": "10"},
        {"type": "typing", "room": False},
    ],
    ids=repr,
)
def test_ill_typed_field_is_bad_request(frame: dict[str, Any]) -> None:
    assert rejected(frame).error.code == "bad_request"


@pytest.mark.parametrize(
    ("frame_type", "field"),
    [("join", "since"), ("history", "before"), ("history", "after"), ("history", "limit")],
)
@pytest.mark.parametrize("value", [True, False])
def test_bool_where_an_int_belongs_is_bad_request(frame_type: str, field: str, value: bool) -> None:
    error = rejected({"type": frame_type, "room": "lobby", field: value})
    assert error.error.code == "bad_request"


@pytest.mark.parametrize(
    ("frame_type", "field"),
    [("join", "since"), ("history", "before"), ("history", "after"), ("history", "limit")],
)
@pytest.mark.parametrize("value", ["1.0", "2.5", "1e1"])
def test_float_where_an_int_belongs_is_bad_request(frame_type: str, field: str, value: str) -> None:
    data = f'{{"type": "{frame_type}", "room": "lobby", "{field}": {value}}}'
    assert rejected(data).error.code == "bad_request"


@pytest.mark.parametrize(
    ("frame_type", "field"), [("join", "since"), ("history", "before"), ("history", "after")]
)
def test_negative_seq_is_bad_request(frame_type: str, field: str) -> None:
    error = rejected({"type": frame_type, "room": "lobby", field: -1})
    assert error.error.code == "bad_request"


@pytest.mark.parametrize(
    ("frame_type", "field"), [("join", "since"), ("history", "before"), ("history", "after")]
)
def test_seq_zero_is_accepted(frame_type: str, field: str) -> None:
    assert getattr(parse({"type": frame_type, "room": "lobby", field: 0}), field) == 0


def test_empty_body_is_bad_request() -> None:
    error = rejected({"type": "send", "room": "lobby", "id": "m1", "body": ""})
    assert error.error.code == "bad_request"


@pytest.mark.parametrize(
    "msg_id",
    [
        "",
        "x" * 65,
        "has space",
        "slash/ed",
        "é",
        "emoji😀",
        "tab\t",
        "trailing-newline\n",
        "\nleading-newline",
        "a+b",
        "a#b",
    ],
    ids=repr,
)
def test_message_id_breaking_the_rules_is_bad_request(msg_id: str) -> None:
    error = rejected({"type": "send", "room": "lobby", "id": msg_id, "body": "b"})
    assert error.error.code == "bad_request"


@pytest.mark.parametrize(
    "msg_id", ["a", "1", "-", ".", ":", "_", ID_CHARS, "x" * 64, "2024-01-01T00:00:00.000"]
)
def test_message_id_within_the_rules_is_accepted(msg_id: str) -> None:
    assert parse({"type": "send", "room": "lobby", "id": msg_id, "body": "b"}).id == msg_id


@pytest.mark.parametrize(
    "room",
    [
        "",
        "Lobby",
        "LOBBY",
        "-lobby",
        "_lobby",
        "lob by",
        "lob.by",
        "lob:by",
        "abc\n",
        "\nabc",
        "abc\r\n",
        "a" * 65,
        "café",
        "\uff4c\uff4f\uff42\uff42\uff59",  # fullwidth "lobby"
        "٣",
    ],
    ids=repr,
)
@pytest.mark.parametrize("frame_type", ["join", "leave", "send", "history", "typing"])
def test_room_name_breaking_the_rules_is_bad_request(frame_type: str, room: str) -> None:
    frame = {"type": frame_type, "room": room, "id": "m1", "body": "b"}
    assert rejected(frame).error.code == "bad_request"


@pytest.mark.parametrize("room", ["a", "0", "lobby", "a-b_c", "9lives", "a_", "z-", "a" * 64])
def test_room_name_within_the_rules_is_accepted(room: str) -> None:
    assert parse({"type": "join", "room": room}).room == room


@pytest.mark.parametrize("limit", [0, 201, -1, 10**6])
def test_history_limit_outside_1_to_200_is_bad_request(limit: int) -> None:
    error = rejected({"type": "history", "room": "lobby", "limit": limit})
    assert error.error.code == "bad_request"


@pytest.mark.parametrize("limit", [1, 200])
def test_history_limit_at_its_bounds_is_accepted(limit: int) -> None:
    assert parse({"type": "history", "room": "lobby", "limit": limit}).limit == limit


# too_large


def send_frame(body: str, ref: str | None = None) -> dict[str, Any]:
    frame = {"type": "send", "room": "lobby", "id": "m1", "body": body}
    return frame if ref is None else {**frame, "ref": ref}


@pytest.mark.parametrize("unit", ["a", "é", "😀", "𝄞"], ids=["ascii", "latin", "emoji", "astral"])
def test_body_of_exactly_max_body_code_points_is_accepted(unit: str) -> None:
    assert parse(send_frame(unit * MAX_BODY)).body == unit * MAX_BODY


@pytest.mark.parametrize("unit", ["a", "é", "😀", "𝄞"], ids=["ascii", "latin", "emoji", "astral"])
def test_body_over_max_body_code_points_is_too_large(unit: str) -> None:
    error = rejected(send_frame(unit * (MAX_BODY + 1), ref="big"))
    assert error.error.code == "too_large"
    assert error.ref == "big"


def test_body_length_counts_code_points_not_bytes_or_utf16_units() -> None:
    body = "😀" * 10  # 40 UTF-8 bytes, 20 UTF-16 code units, 10 code points
    assert parse(send_frame(body), max_body=10).body == body
    assert rejected(send_frame(body + "a"), max_body=10).error.code == "too_large"


def test_combining_characters_count_one_code_point_each() -> None:
    body = "e\u0301" * 5  # five visible characters, ten code points
    assert rejected(send_frame(body), max_body=9).error.code == "too_large"
    assert parse(send_frame(body), max_body=10).body == body


def test_max_body_is_the_configured_limit() -> None:
    assert parse(send_frame("x" * 5000), max_body=5000).body == "x" * 5000
    assert rejected(send_frame("x" * 3), max_body=2).error.code == "too_large"


# Forward compatibility


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"type": "ping", "x": 1, "nested": {"a": [1, {"b": None}]}}, Ping()),
        ({"type": "ping", "room": "NOT A ROOM", "since": -5}, Ping()),
        (
            {"type": "send", "room": "lobby", "id": "m1", "body": "b", "quote": 3},
            Send(room="lobby", id="m1", body="b"),
        ),
        ({"type": "join", "room": "lobby", "limit": "x"}, Join(room="lobby")),
        ({"type": "hello", "token": "t", "client": "web/1.2"}, Hello(token="t")),
    ],
    ids=repr,
)
def test_unknown_extra_fields_are_ignored(frame: dict[str, Any], expected: Any) -> None:
    assert parse(frame) == expected


DEPTH = 5_000  # 10 KB of brackets: far below the 64 KiB frame limit


@pytest.mark.parametrize(
    "prefix",
    [
        '{"type": "ping", "ref": "r1", "x": ',
        '{"ref": "r1", "x": ',
        '{"type": "nope", "ref": "r1", "x": ',
    ],
    ids=["ping", "no-type", "unknown-type"],
)
def test_deeply_nested_value_is_ignored_or_bad_request_with_its_ref(prefix: str) -> None:
    """Valid JSON nested deeper than the interpreter's recursion limit must not escape as
    RecursionError (which the gateway does not catch): it is ignored or bad_request."""
    data = prefix + "[" * DEPTH + "]" * DEPTH + "}"
    try:
        frame = parse_frame(data, MAX_BODY)
    except FrameError as exc:
        assert exc.error.code == "bad_request"
        assert exc.ref == "r1"
    else:
        assert frame == Ping(ref="r1")


# Server frames


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
def test_ws_text_frame_has_a_minimal_rfc6455_header(length: int) -> None:
    payload = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
    frame = ws_text_frame(payload)

    assert frame[0] == 0x81  # FIN, no RSV bits, opcode 1 (text)
    assert frame[1] & 0x80 == 0  # server frames are never masked
    short = frame[1] & 0x7F
    if length <= 125:
        assert (short, len(frame) - len(payload)) == (length, 2)
        header = 2
    elif length <= 0xFFFF:
        assert short == 126
        assert int.from_bytes(frame[2:4], "big") == length
        header = 4
    else:
        assert short == 127
        assert frame[2] & 0x80 == 0  # the most significant bit of a 64-bit length is 0
        assert int.from_bytes(frame[2:10], "big") == length
        header = 10
    assert frame[header:] == payload
    assert len(frame) == header + length


def test_encode_produces_compact_utf8_json() -> None:
    frame = {"type": "message", "room": "r", "body": "héllo 😀", "seq": 1}
    data = encode(frame)
    assert isinstance(data, bytes)
    assert json.loads(data) == frame
    assert "héllo 😀".encode() in data


def test_error_frame_carries_code_message_and_ref_only_when_given() -> None:
    assert error_frame(BadRequest("nope")) == {
        "type": "error",
        "code": "bad_request",
        "message": "nope",
    }
    assert error_frame(Conflict("taken"), ref="r9")["ref"] == "r9"


def test_rate_limited_error_frame_carries_retry_after() -> None:
    frame = error_frame(RateLimited(0.25), ref="r")
    assert (frame["code"], frame["retry_after"], frame["ref"]) == ("rate_limited", 0.25, "r")


# Name and password rules used by the HTTP API


@pytest.mark.parametrize("name", ["a", "Alice", "bob.smith", "x_y-z", "A" * 32, "0"])
def test_username_within_the_rules_is_valid(name: str) -> None:
    assert valid_username(name)


@pytest.mark.parametrize("name", ["", "A" * 33, "al ice", "alice\n", "ålice", "a@b", "a:b"])
def test_username_breaking_the_rules_is_invalid(name: str) -> None:
    assert not valid_username(name)


def test_room_name_helper_rejects_a_trailing_newline() -> None:
    assert valid_room_name("abc")
    assert not valid_room_name("abc\n")


@pytest.mark.parametrize(("length", "ok"), [(7, False), (8, True), (1024, True), (1025, False)])
def test_password_must_be_8_to_1024_characters(length: int, ok: bool) -> None:
    assert valid_password("p" * length) is ok
    assert valid_password("😀" * length) is ok
