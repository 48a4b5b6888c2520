"""Each reply builder of protocol/bodies.py builds what its struct (and so the OpenAPI
document) describes, field for field."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from hubbub.protocol import bodies
from hubbub.protocol.errors import RateLimited

USER = {"name": "ann"}
ROOM = {
    "name": "r",
    "topic": "",
    "private": False,
    "owner": "ann",
    "moderators": [],
    "members": ["ann"],
    "last_seq": 0,
    "created_at": 1,
    "archived": False,
}
MESSAGE = {"room": "r", "seq": 1, "id": "m", "from": "ann", "body": "hi", "ts": 2}
TOMBSTONE = {"room": "r", "seq": 2, "id": "n", "from": "ann", "ts": 3, "deleted": True}
SESSION = {
    "id": "s",
    "created": 1,
    "last_used": 2,
    "expires": 3,
    "user_agent": "ua",
    "address": "::1",
    "current": True,
}


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (bodies.user_reply(USER), bodies.UserReply),
        (bodies.login_reply("t", USER), bodies.LoginReply),
        (bodies.sessions_reply([SESSION]), bodies.SessionsReply),
        (bodies.room_reply(ROOM), bodies.RoomReply),
        (bodies.rooms_reply([ROOM]), bodies.RoomsReply),
        (bodies.users_reply(["ann"]), bodies.UsersReply),
        (bodies.history_reply([MESSAGE, TOMBSTONE], False), bodies.HistoryReply),
        (bodies.status_reply("ok"), bodies.Status),
        (bodies.error_reply(RateLimited(0.5)), bodies.ErrorReply),
    ],
)
def test_a_reply_is_what_its_struct_describes(body: dict[str, Any], kind: type[Any]) -> None:
    reply = msgspec.convert(body, kind)
    assert msgspec.to_builtins(reply) == body
