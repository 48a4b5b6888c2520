"""Server frames: one builder per frame the server sends (docs/protocol.md, "WebSocket").

Each builder returns the frame as a dict, keys in wire order, for `frames.encode`; the
gateway adds `ref` (last) when the frame answers a client frame. A new server frame gets
its builder here, so every field it carries has one definition.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hubbub.protocol.errors import ProtocolError


def welcome_frame(user: str, session: str, node: str, heartbeat: float) -> dict[str, Any]:
    """The answer to `hello`."""
    return {
        "type": "welcome",
        "user": user,
        "session": session,
        "node": node,
        "heartbeat": heartbeat,
    }


def joined_frame(room: str, seq: int, presence: list[str], recovered: bool) -> dict[str, Any]:
    """The answer to `join`: the room's last seq, who is online, and whether the replay
    that follows covers everything after `since`."""
    return {
        "type": "joined",
        "room": room,
        "seq": seq,
        "presence": presence,
        "recovered": recovered,
    }


def left_frame(room: str, reason: str | None = None) -> dict[str, Any]:
    """The answer to `leave` (no reason), or the notice that a kick, ban or leave
    elsewhere removed this user from the room (with the reason)."""
    if reason is None:
        return {"type": "left", "room": room}
    return {"type": "left", "room": room, "reason": reason}


def message_frame(room: str, seq: int, id: str, sender: str, body: str, ts: int) -> dict[str, Any]:
    """One message of a room: built and encoded once, written to every recipient."""
    return {
        "type": "message",
        "room": room,
        "seq": seq,
        "id": id,
        "from": sender,
        "body": body,
        "ts": ts,
    }


def redacted_frame(room: str, seq: int, id: str, sender: str, ts: int) -> dict[str, Any]:
    """A message that was deleted, as a replay gives it: its body is gone from storage."""
    return {
        "type": "message",
        "room": room,
        "seq": seq,
        "id": id,
        "from": sender,
        "ts": ts,
        "deleted": True,
    }


def update_frame(
    room: str, seq: int, kind: str, sender: str, ts: int, target: int | None
) -> dict[str, Any]:
    """An update of a room's log (an edit, delete, reaction or topic): the caller adds the
    field of its kind (`body`, `key`, `topic` or `by`)."""
    frame: dict[str, Any] = {
        "type": "update",
        "room": room,
        "seq": seq,
        "kind": kind,
        "from": sender,
        "ts": ts,
    }
    if target is not None:
        frame["target"] = target
    return frame


def reaction_view(key: str, count: int, users: list[str], me: bool) -> dict[str, Any]:
    """One key of a message's reactions as history lists it: `users` names up to 10."""
    return {"key": key, "count": count, "users": users, "me": me}


def replies_view(count: int, last_seq: int, last_ts: int) -> dict[str, Any]:
    """The summary of a thread, on its root as history lists it."""
    return {"count": count, "last_seq": last_seq, "last_ts": last_ts}


def message_view(room: str, seq: int, id: str, sender: str, body: str, ts: int) -> dict[str, Any]:
    """A message as history lists it (HTTP and the `history` frame): the `message` frame
    without its `type`."""
    return {"room": room, "seq": seq, "id": id, "from": sender, "body": body, "ts": ts}


def tombstone_view(room: str, seq: int, id: str, sender: str, ts: int) -> dict[str, Any]:
    """A redacted message as history lists it: no body, `"deleted": true`."""
    return {"room": room, "seq": seq, "id": id, "from": sender, "ts": ts, "deleted": True}


def ack_frame(room: str, id: str, seq: int, ts: int) -> dict[str, Any]:
    """The answer to `send`, once the message is durable."""
    return {"type": "ack", "room": room, "id": id, "seq": seq, "ts": ts}


def history_frame(room: str, messages: Iterable[dict[str, Any]], more: bool) -> dict[str, Any]:
    """The answer to `history`: message views (see `message_view`), oldest first."""
    return {"type": "history", "room": room, "messages": list(messages), "more": more}


def typing_frame(room: str, user: str) -> dict[str, Any]:
    return {"type": "typing", "room": room, "user": user}


def presence_frame(room: str, user: str, status: str) -> dict[str, Any]:
    """`status` "online": a user's first connection joined the room; "offline": its last
    one left, disconnected or missed its heartbeats."""
    return {"type": "presence", "room": room, "user": user, "status": status}


def pong_frame() -> dict[str, Any]:
    return {"type": "pong"}


def error_frame(error: ProtocolError, ref: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", **error.payload()}
    if ref is not None:
        frame["ref"] = ref
    return frame
