"""Every refused frame is answered in words about its input: the field, the rule, the fix;
never a validator's message, a regex or a JSON path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hubbub.protocol import rules
from hubbub.protocol.frames import FrameError, parse_frame

# What a validator or a regex looks like in a message: none of it may reach a person.
INTERNALS = ("Expected", "`", "$.", "regex", "\\A", "\\Z", "[a-z", "{0,", "msgspec", "Object ")

BAD_FRAMES: list[tuple[Any, str]] = [
    ({"type": "send", "room": "lobby", "id": "m1", "body": ""}, "cannot be empty"),
    ({"type": "send", "room": "lobby", "id": "m1", "body": "   \n\t "}, "only spaces"),
    ({"type": "send", "room": "lobby", "id": "m1", "body": "ding\x07"}, "U+0007 at character 5"),
    ({"type": "send", "room": "lobby", "id": "m1", "body": "a\x00b"}, "U+0000"),
    ({"type": "send", "room": "lobby", "id": "m1", "body": 7}, "a message needs some text"),
    ({"type": "send", "room": "lobby", "body": "hi"}, "a send frame needs id"),
    ({"type": "send", "room": "lobby", "id": "has space", "body": "hi"}, "a message id is"),
    ({"type": "join", "room": "Design-Review"}, "try design-review"),
    ({"type": "join", "room": "Café Ünïcode"}, "try cafe-unicode"),
    ({"type": "join", "room": "!!!"}, "room names are 1 to 64 characters"),
    ({"type": "join"}, "a join frame needs room"),
    ({"type": "join", "room": "lobby", "since": -1}, "a seq is a whole number"),
    ({"type": "history", "room": "lobby", "limit": 0}, "limit is how many messages"),
    ({"type": "history", "room": "lobby", "before": "7"}, "a seq is a whole number"),
    ({"type": "hello"}, "a hello frame needs token"),
    ({"type": "hello", "token": 5}, "token is the text"),
    ({"type": "ping", "ref": "r" * 65}, "ref is a label"),
    ({"type": "dance"}, "unknown frame type 'dance'"),
    ({"room": "lobby"}, 'a frame is one JSON object with a "type"'),
    ([1, 2], 'a frame is one JSON object with a "type"'),
    ("ping", 'a frame is one JSON object with a "type"'),
]


@pytest.mark.parametrize(("frame", "words"), BAD_FRAMES)
def test_a_refused_frame_is_answered_with_its_rule_in_words(frame: Any, words: str) -> None:
    with pytest.raises(FrameError) as refused:
        parse_frame(json.dumps(frame), 4000)
    error = refused.value.error
    assert error.code == "bad_request"
    assert words in error.message, error.message
    assert not [bit for bit in INTERNALS if bit in error.message], error.message


def test_a_body_over_the_limit_says_by_how_much() -> None:
    with pytest.raises(FrameError) as refused:
        parse_frame(json.dumps({"type": "send", "room": "r", "id": "m", "body": "x" * 5000}), 4000)
    assert refused.value.error.code == "too_large"
    assert (
        refused.value.error.message == "a message is at most 4000 characters; this one is 1000 over"
    )


@pytest.mark.parametrize(
    "body", ["line one\nline two", "crlf\r\nline", "col\tcol", "  padded  ", "😀", "שלום"]
)
def test_newlines_tabs_spaces_around_text_and_any_script_are_fine(body: str) -> None:
    frame = parse_frame(json.dumps({"type": "send", "room": "r", "id": "m", "body": body}), 4000)
    assert frame.body == body  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("Design Review", "design-review"),
        ("design review", "design-review"),
        ("-lobby-", "lobby"),
        ("lobby", None),  # valid already: nothing to suggest
        ("***", None),
        ("x" * 70, "x" * 64),
    ],
)
def test_a_room_name_suggestion_is_valid_or_absent(name: str, suggestion: str | None) -> None:
    assert rules.suggest_room(name) == suggestion
