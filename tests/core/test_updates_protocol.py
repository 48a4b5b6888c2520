"""Protocol v2, section 1, without sockets: the update frames parse into their structs, a
reaction key's rule, the words of refusals, the `update` frames entries make, history
views in the current state, and when a repeat is the same entry."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hubbub.engine.base import Message, replayed
from hubbub.engine.entry import Draft, Kind, Reaction
from hubbub.protocol import rules
from hubbub.protocol.errors import Conflict
from hubbub.protocol.frames import (
    Delete,
    Edit,
    FrameError,
    History,
    React,
    Send,
    Unreact,
    parse_frame,
)

INTERNALS = ("Expected", "`", "$.", "regex", "msgspec", "Object ")


def parse(frame: Any) -> Any:
    return parse_frame(json.dumps(frame), 4000)


def refusal(frame: Any) -> tuple[str, str]:
    with pytest.raises(FrameError) as refused:
        parse(frame)
    error = refused.value.error
    assert not [bit for bit in INTERNALS if bit in error.message], error.message
    assert refused.value.ref == frame.get("ref")
    return error.code, error.message


def test_update_frames_parse_into_their_structs() -> None:
    base = {"room": "lobby", "id": "u1"}
    assert parse({"type": "edit", **base, "target": 3, "body": "b"}) == Edit(
        room="lobby", id="u1", target=3, body="b"
    )
    assert parse({"type": "delete", **base, "target": 3}) == Delete(room="lobby", id="u1", target=3)
    assert parse({"type": "react", **base, "target": 3, "key": "👍"}) == React(
        room="lobby", id="u1", target=3, key="👍"
    )
    assert parse({"type": "unreact", **base, "target": 3, "key": ":+1:"}) == Unreact(
        room="lobby", id="u1", target=3, key=":+1:"
    )
    assert parse({"type": "send", **base, "body": "b", "reply_to": 2, "thread": 1}) == Send(
        room="lobby", id="u1", body="b", reply_to=2, thread=1
    )
    assert parse({"type": "history", "room": "lobby", "thread": 4}) == History(
        room="lobby", thread=4
    )


@pytest.mark.parametrize(
    "key",
    ["👍", ":tada:", "+1", "👩‍💻", "🏳️‍🌈", "👍🏽", "🇫🇷", "x" * 32, "日本", "1️⃣"],
)
def test_emoji_and_shortcodes_are_keys(key: str) -> None:
    assert rules.key_problem(key) is None, key


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("", "1 to 32 characters"),
        ("x" * 33, "this one is 1 over"),
        ("a b", "U+0020 at character 2"),
        ("a\u00a0", "U+00A0"),  # a no-break space (Zs)
        ("a\tb", "U+0009"),
        ("\u200dx", "U+200D at character 1"),  # a joiner joins nothing at the start
        ("x\u200d", "U+200D"),
        ("a\u200d\u200db", "U+200D"),
        ("x\u200b", "U+200B"),  # zero-width space (Cf)
        ("x\u202e", "U+202E"),  # right-to-left override (Cf)
        ("\U000e0001", "U+E0001"),
        ("x\u2028", "U+2028"),  # line separator (Zl)
        ("\ue000", "U+E000"),  # private use (Co)
    ],
)
def test_a_refused_key_says_why_in_words(key: str, words: str) -> None:
    code, message = refusal({"type": "react", "room": "r", "id": "u", "target": 1, "key": key})
    assert code == "bad_request"
    assert words in message and "reaction key" in message, message


@pytest.mark.parametrize(
    ("kind", "fields", "code", "words"),
    [
        ("edit", {"body": "x"}, "bad_request", "an edit frame needs target"),
        ("edit", {"target": "1", "body": "x"}, "bad_request", "target is the seq"),
        ("edit", {"target": 1, "body": " "}, "bad_request", "cannot be empty"),
        ("edit", {"target": 1, "body": "x" * 4001}, "too_large", "1 over"),
        ("delete", {"target": 1, "id": None}, "bad_request", "a delete frame needs id"),
        ("react", {"target": 1, "key": 5}, "bad_request", "a reaction key"),
        ("unreact", {"target": 1}, "bad_request", "needs key"),
        ("send", {"body": "x", "reply_to": -1}, "bad_request", "reply_to is"),
        ("send", {"body": "x", "thread": "2"}, "bad_request", "thread is"),
        ("history", {"thread": 1.5}, "bad_request", "thread is"),
    ],
)
def test_bad_update_fields_are_answered_with_their_rule(
    kind: str, fields: dict[str, Any], code: str, words: str
) -> None:
    frame = {"type": kind, "room": "r", "id": "u", "ref": "r1", **fields}
    got, message = refusal({k: v for k, v in frame.items() if v is not None})
    assert got == code
    assert words in message, message


def entry(**fields: Any) -> Message:
    return Message("lobby", 7, "u1", "ann", fields.pop("body", ""), 1000, **fields)


def test_updates_make_update_frames_with_the_field_of_their_kind() -> None:
    head = {"type": "update", "room": "lobby", "seq": 7, "from": "ann", "ts": 1000}
    assert entry(kind=Kind.EDIT, target=3, body="new").frame() == {
        **head,
        "kind": "edit",
        "target": 3,
        "body": "new",
    }
    assert entry(kind=Kind.REACT, target=3, key="👍").frame() == {
        **head,
        "kind": "react",
        "target": 3,
        "key": "👍",
    }
    assert entry(kind=Kind.DELETE, target=3).frame() == {
        **head,
        "kind": "delete",
        "target": 3,
        "by": "ann",
    }
    assert entry(kind=Kind.TOPIC, topic="plans").frame() == {
        **head,
        "kind": "topic",
        "topic": "plans",
    }
    # Redacted with their message: the text is gone, the entry says so.
    assert entry(kind=Kind.UNREACT, target=3, deleted=True).frame() == {
        **head,
        "kind": "unreact",
        "target": 3,
        "deleted": True,
    }


def test_a_message_frame_carries_its_references_only_when_set() -> None:
    assert "reply_to" not in entry(body="hi").frame()
    frame = entry(body="hi", reply_to=2, thread=1).frame()
    assert (frame["type"], frame["reply_to"], frame["thread"], frame["body"]) == (
        "message",
        2,
        1,
        "hi",
    )
    assert entry(deleted=True).frame() == {
        "type": "message",
        "room": "lobby",
        "seq": 7,
        "id": "u1",
        "from": "ann",
        "ts": 1000,
        "deleted": True,
    }


def test_a_history_view_is_the_current_state() -> None:
    reaction = Reaction("👍", 11, tuple(f"u{i}" for i in range(10)), frozenset({"bob", "u0"}))
    m = entry(body="old", current="new", edited=2000, reactions=(reaction,), replies=(2, 9, 3000))
    view = m.view("Bob")
    assert view["body"] == "new" and view["edited"] == 2000
    assert view["reactions"] == [
        {"key": "👍", "count": 11, "users": [f"u{i}" for i in range(10)], "me": True}
    ]
    assert view["replies"] == {"count": 2, "last_seq": 9, "last_ts": 3000}
    assert m.view("carol")["reactions"][0]["me"] is False
    plain = entry(body="hi").view()
    assert set(plain) == {"room", "seq", "id", "from", "body", "ts"}
    tombstone = entry(deleted=True, replies=(1, 8, 2500)).view()
    assert tombstone["deleted"] is True and "body" not in tombstone
    assert tombstone["replies"]["count"] == 1  # a thread outlives its root's text


def test_a_repeat_is_the_same_entry_only_with_the_same_content() -> None:
    edit = entry(kind=Kind.EDIT, target=3, body="new")
    assert replayed(edit, Draft(Kind.EDIT, body="new", target=3)).created is False
    for other in (
        Draft(Kind.EDIT, body="other", target=3),
        Draft(Kind.EDIT, body="new", target=4),
        Draft(Kind.DELETE, target=3),
        Draft(body="new"),
    ):
        with pytest.raises(Conflict):
            replayed(edit, other)
    message = entry(body="hi", reply_to=2)
    with pytest.raises(Conflict):
        replayed(message, "hi")  # a plain send is not the reply
    assert replayed(message, Draft(body="hi", reply_to=2)).message is message
    # A redacted entry's text is gone: its repeat is compared on the rest.
    redacted = entry(kind=Kind.EDIT, target=3, deleted=True)
    assert replayed(redacted, Draft(Kind.EDIT, body="anything", target=3)).created is False
    with pytest.raises(Conflict):
        replayed(redacted, Draft(Kind.REACT, target=3, key="a"))
