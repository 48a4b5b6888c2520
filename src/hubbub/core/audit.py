"""The audit log: who did what to whom, from where, and whether it worked.

One JSON line per event on the `hubbub.audit` logger (the node's JSON log on stderr, see
`logs.py`), so operators can route it apart from the rest. Its level is pinned at INFO:
`--log-level warning` quiets the node, never its audit trail. Fields: `event`, `actor`,
`target`, `room`, `address`, `user_agent`, `outcome` (`ok`, or the error code that
refused it), `at` (Unix ms), and where they apply `reason` (why a login failed) and
`count` (sessions revoked at once) and `seq` (the message a moderator deleted: its
sender is the `target`). Secrets never appear: no password, no token, no
token hash (sessions are named by their public id).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Final

from hubbub.protocol.errors import ProtocolError

AUDIT_LOGGER: Final = "hubbub.audit"
log = logging.getLogger(AUDIT_LOGGER)


@dataclass(frozen=True, slots=True)
class Client:
    """Who made a request, for throttling and the audit log."""

    address: str = ""
    user_agent: str = ""


def audit(
    event: str,
    *,
    actor: str | None,
    client: Client | None = None,
    target: str | None = None,
    room: str | None = None,
    outcome: str = "ok",
    reason: str | None = None,
    count: int | None = None,
    seq: int | None = None,
) -> None:
    fields: dict[str, object] = {
        "event": event,
        "actor": actor,
        "target": target,
        "room": room,
        "address": client.address if client else None,
        "user_agent": client.user_agent if client else None,
        "outcome": outcome,
        "at": int(time.time() * 1000),
    }
    if reason is not None:
        fields["reason"] = reason
    if count is not None:
        fields["count"] = count
    if seq is not None:
        fields["seq"] = seq
    log.info(event, extra=fields)


@contextmanager
def audited(
    event: str,
    actor: str,
    client: Client | None,
    *,
    target: str | None = None,
    room: str | None = None,
) -> Iterator[None]:
    """Audit `event` with its outcome: `ok`, or the code of the error that refused it (the
    names of a refused call are cut at 64 characters: they may be anything a client sent)."""
    try:
        yield
    except ProtocolError as exc:
        audit(
            event,
            actor=actor,
            client=client,
            target=target[:64] if target is not None else None,
            room=room[:64] if room is not None else None,
            outcome=exc.code,
        )
        raise
    audit(event, actor=actor, client=client, target=target, room=room)


def audited_unless_self(
    event: str, actor: str, client: Client | None, target: str, room: str
) -> AbstractContextManager[None]:
    """Audited when the actor acts on another user; joining or leaving oneself is not."""
    if target.lower() == actor.lower():
        return nullcontext()
    return audited(event, actor, client, target=target, room=room)
