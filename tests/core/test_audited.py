"""`core.audit.audited`: one line per event, with the outcome the rule reached."""

from __future__ import annotations

import logging

import pytest

from hubbub.core.audit import AUDIT_LOGGER, Client, audited, audited_unless_self
from hubbub.protocol.errors import Forbidden

CLIENT = Client("192.0.2.7", "test/1")


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, object, object, str]]:
    return [
        (r.event, r.actor, r.target, r.room, r.outcome)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == AUDIT_LOGGER
    ]


def test_a_call_that_succeeds_is_audited_ok(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.INFO, AUDIT_LOGGER),
        audited("ban", "owner", CLIENT, target="bob", room="lobby"),
    ):
        pass
    assert lines(caplog) == [("ban", "owner", "bob", "lobby", "ok")]
    assert caplog.records[0].address == "192.0.2.7"  # type: ignore[attr-defined]


def test_a_refused_call_is_audited_with_its_code_and_names_cut_short(
    caplog: pytest.LogCaptureFixture,
) -> None:
    long = "x" * 100
    with (
        caplog.at_level(logging.INFO, AUDIT_LOGGER),
        pytest.raises(Forbidden),
        audited("promote", "bob", CLIENT, target=long, room=long),
    ):
        raise Forbidden("only the owner may promote or demote moderators")
    assert lines(caplog) == [("promote", "bob", "x" * 64, "x" * 64, "forbidden")]


def test_an_internal_failure_is_not_audited(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.INFO, AUDIT_LOGGER),
        pytest.raises(RuntimeError),
        audited("unban", "owner", CLIENT, target="bob", room="lobby"),
    ):
        raise RuntimeError("a bug, logged elsewhere")
    assert lines(caplog) == []


def test_acting_on_oneself_is_not_audited(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, AUDIT_LOGGER):
        with audited_unless_self("invite", "Alice", CLIENT, "alice", "lobby"):
            pass  # joining a public room
        with audited_unless_self("kick", "alice", CLIENT, "bob", "lobby"):
            pass
    assert lines(caplog) == [("kick", "alice", "bob", "lobby", "ok")]
