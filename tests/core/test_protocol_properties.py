"""Property tests for `parse_frame`: any input yields a frame or a protocol error, nothing else.

Frame-shaped input is also checked against an independent model of the spec's rules.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from hubbub.protocol.frames import (
    FrameError,
    Hello,
    History,
    Join,
    Leave,
    Ping,
    Send,
    Typing,
    parse_frame,
)

STRUCTS: dict[str, type[Any]] = {
    "hello": Hello,
    "join": Join,
    "leave": Leave,
    "send": Send,
    "history": History,
    "typing": Typing,
    "ping": Ping,
}
ROOM = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MESSAGE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
INT64_MAX = 2**63 - 1

REQUIRED = {
    "hello": ["token"],
    "join": ["room"],
    "leave": ["room"],
    "send": ["room", "id", "body"],
    "history": ["room"],
    "typing": ["room"],
    "ping": [],
}
OPTIONAL = {"join": ["since"], "history": ["before", "after", "limit"]}


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

seqs = st.integers(min_value=0, max_value=2**66) | st.sampled_from([0, 1, INT64_MAX])
GOOD: dict[str, st.SearchStrategy[Any]] = {
    "ref": st.text(max_size=64),
    "token": st.text(max_size=20),
    "room": st.from_regex(ROOM, fullmatch=True),
    "id": st.from_regex(MESSAGE_ID, fullmatch=True),
    "body": st.text(min_size=1, max_size=24) | st.sampled_from(["😀" * 12, "e\u0301" * 6]),
    "since": seqs,
    "before": seqs,
    "after": seqs,
    "limit": st.integers(min_value=1, max_value=200),
}
BAD: dict[str, st.SearchStrategy[Any]] = {
    "ref": st.sampled_from(["x" * 65, "😀" * 65]) | json_values,
    "token": json_values,
    "room": st.sampled_from(["", "Lobby", "abc\n", "a" * 65, "-a", "é", "a.b"]) | json_values,
    "id": st.sampled_from(["", "x" * 65, "a b", "a\n", "é", "a/b"]) | json_values,
    "body": st.just("") | json_values,
    "since": st.integers(max_value=-1) | json_values,
    "before": st.integers(max_value=-1) | json_values,
    "after": st.integers(max_value=-1) | json_values,
    "limit": st.sampled_from([0, 201, -1, 2**64]) | json_values,
}


@st.composite
def frame_shaped(draw: st.DrawFn) -> dict[str, Any]:
    """A dict shaped like a client frame: mostly a real `type` with its fields, mostly valid,
    sometimes a wrong type, a missing or invalid field, fields of other frame types, and
    unknown fields (prefixed so they never shadow a real one)."""
    kind = draw(st.sampled_from(list(STRUCTS)))
    frame: dict[str, Any] = {}
    junk_type = draw(st.integers(0, 9)) == 0
    if not junk_type:
        frame["type"] = kind
    elif draw(st.booleans()):
        frame["type"] = draw(st.sampled_from(["shout", "Ping", "", "welcome"]) | json_scalars)
    relevant = {"ref", *REQUIRED[kind], *OPTIONAL.get(kind, [])}
    for name in GOOD:
        if draw(st.integers(0, 9)) < (9 if name in relevant else 2):
            valid = draw(st.integers(0, 9)) < 8
            frame[name] = draw(GOOD[name] if valid else BAD[name])
    extra = st.dictionaries(st.text(max_size=6).map(lambda k: "x-" + k), json_values, max_size=2)
    frame.update(draw(extra))
    return frame


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def field_outcomes(name: str, value: Any, present: bool) -> set[str]:
    """What the spec makes of one field of a known frame type: {'ok'}, {'bad'} or both
    where the spec is silent (null for an optional field, seqs past 64 bits)."""
    if name in ("room", "id", "token", "body"):
        if not present or not isinstance(value, str):
            return {"bad"}
        if name == "room":
            return {"ok"} if ROOM.fullmatch(value) else {"bad"}
        if name == "id":
            return {"ok"} if MESSAGE_ID.fullmatch(value) else {"bad"}
        if name == "body":
            return {"ok"} if value else {"bad"}
        return {"ok"}
    if not present:
        return {"ok"}
    if value is None:
        return {"ok", "bad"}
    if name == "limit":
        return {"ok"} if is_int(value) and 1 <= value <= 200 else {"bad"}
    # since, before, after
    if not is_int(value) or value < 0:
        return {"bad"}
    return {"ok"} if value <= INT64_MAX else {"ok", "bad"}


def expected_outcomes(frame: dict[str, Any], max_body: int) -> set[str]:
    """The spec's verdict on a frame: 'ok', 'bad_request' or 'too_large' (a set where
    more than one answer conforms)."""
    kind = frame.get("type")
    if not isinstance(kind, str) or kind not in STRUCTS:
        return {"bad_request"}
    verdicts: set[str] = {"ok"}
    fields = ["ref", *REQUIRED[kind], *OPTIONAL.get(kind, [])]
    for name in fields:
        if name == "ref":
            ref = frame.get("ref")
            outcome = {"ok"} if isinstance(ref, str) and len(ref) <= 64 else {"bad"}
            if "ref" not in frame:
                outcome = {"ok"}
            elif ref is None:
                outcome = {"ok", "bad"}
        else:
            outcome = field_outcomes(name, frame.get(name), name in frame)
        if outcome == {"bad"}:
            return {"bad_request"}
        if "bad" in outcome:
            verdicts.add("bad_request")
    if kind == "send" and len(frame["body"]) > max_body:
        verdicts = {"too_large"} | (verdicts - {"ok"})
    elif kind == "send" and "ok" in verdicts:
        body = frame["body"]
        # Text, not only whitespace, and no control characters but tab and line ends.
        controls = [c for c in body if unicodedata.category(c) == "Cc" and c not in "\n\t\r"]
        if not body.strip() or controls:
            verdicts = {"bad_request"}
    return verdicts


def outcome_of(data: str | bytes, max_body: int) -> tuple[str, Any]:
    """Parse, turning the only acceptable failure into a value; anything else propagates."""
    try:
        return "ok", parse_frame(data, max_body)
    except FrameError as exc:
        assert exc.error.code in ("bad_request", "too_large"), exc.error.code
        assert exc.ref is None or (isinstance(exc.ref, str) and len(exc.ref) <= 64)
        return exc.error.code, exc


@settings(max_examples=300)
@given(value=json_values | frame_shaped(), max_body=st.integers(1, 30), ascii_only=st.booleans())
def test_any_json_value_parses_to_a_frame_or_a_protocol_error(
    value: Any, max_body: int, ascii_only: bool
) -> None:
    data = json.dumps(value, ensure_ascii=ascii_only).encode()
    outcome, result = outcome_of(data, max_body)
    if outcome == "ok":
        assert type(result) in STRUCTS.values()


@settings(max_examples=500)
@given(frame=frame_shaped(), max_body=st.integers(1, 30))
def test_frame_shaped_json_gets_exactly_the_verdict_the_spec_gives(
    frame: dict[str, Any], max_body: int
) -> None:
    outcome, result = outcome_of(json.dumps(frame), max_body)
    assert outcome in expected_outcomes(frame, max_body), (outcome, result)
    if outcome == "ok":
        assert type(result) is STRUCTS[frame["type"]]
        for name in ("ref", *REQUIRED[frame["type"]], *OPTIONAL.get(frame["type"], [])):
            if name in frame:
                assert getattr(result, name) == frame[name], name
        return
    ref = frame.get("ref")
    if outcome == "too_large" or (isinstance(ref, str) and len(ref) <= 64):
        assert result.ref == ref, "a valid ref is echoed even on an invalid frame"
    else:
        assert result.ref is None


@settings(max_examples=300)
@given(data=st.text(max_size=80) | st.binary(max_size=80), max_body=st.integers(1, 30))
def test_arbitrary_text_or_bytes_parse_to_a_frame_or_a_protocol_error(
    data: str | bytes, max_body: int
) -> None:
    outcome_of(data, max_body)


# Not shrunk: a mangled frame is already small and shrinking one costs seconds per failure.
@settings(max_examples=300, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(
    frame=frame_shaped(),
    cut=st.integers(0, 200),
    length=st.integers(0, 8),
    insert=st.binary(max_size=4),
)
@example(frame={"type": "ping", "ref": "é"}, cut=26, length=1, insert=b"")  # half of an é
def test_mangled_frame_bytes_parse_to_a_frame_or_a_protocol_error(
    frame: dict[str, Any], cut: int, length: int, insert: bytes
) -> None:
    data = json.dumps(frame, ensure_ascii=False).encode()
    cut = min(cut, len(data))
    outcome_of(data[:cut] + insert + data[cut + length :], 30)
