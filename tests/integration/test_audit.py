"""The audit log (docs/security.md): one JSON line per security event on the `hubbub.audit`
logger, with who, whom, where from and the outcome; never a password or a token. The node
runs at --log-level warning: the audit trail is kept anyway."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from support.api import Api
from support.server import ServerProcess

PASSWORD = "correct horse"
SECRET = "hunter2-never-logged"
FIELDS = {"event", "actor", "target", "room", "address", "user_agent", "outcome", "at"}


async def post(api: Api, path: str, payload: dict[str, Any], via: str) -> int:
    async with api.session.post(
        api.base + path,
        json=payload,
        headers={"X-Forwarded-For": via, "User-Agent": "audit-test/1"},
    ) as r:
        return r.status


async def test_security_events_are_audited_with_their_fields_and_no_secrets(
    server_factory: Any, on: Callable[[ServerProcess], Api], wait_for: Any
) -> None:
    node = server_factory(
        env={
            "HUBBUB_LOG_LEVEL": "warning",
            "HUBBUB_LOGIN_FAILURES": "2",
            "HUBBUB_TRUSTED_PROXIES": "127.0.0.1",
        }
    )
    api = on(node)
    owner, owner_token = await api.user()
    bob, bob_token = await api.user()
    creds = {"username": owner, "password": SECRET}
    assert (
        await post(api, "/api/v1/users", {"username": owner, "password": PASSWORD}, "192.0.2.7")
        == 409
    )
    assert await post(api, "/api/v1/login", creds, "192.0.2.7") == 401
    assert (
        await post(api, "/api/v1/login", {**creds, "username": "nobody-here"}, "192.0.2.7") == 401
    )
    assert await post(api, "/api/v1/login", {**creds, "password": PASSWORD}, "192.0.2.7") == 429
    room = await api.room(owner_token, private=True)
    base = f"/api/v1/rooms/{room}"
    for method, path, token, status in [
        ("PUT", f"{base}/members/{bob}", owner_token, 204),
        ("PUT", f"{base}/moderators/{bob}", bob_token, 403),
        ("PUT", f"{base}/moderators/{bob}", owner_token, 204),
        ("DELETE", f"{base}/moderators/{bob}", owner_token, 204),
        ("DELETE", f"{base}/members/{bob}", owner_token, 204),
        ("PUT", f"{base}/bans/{bob}", owner_token, 204),
        ("DELETE", f"{base}/bans/{bob}", owner_token, 204),
        ("DELETE", "/api/v1/me/sessions/unknown", bob_token, 404),
        ("DELETE", "/api/v1/me/sessions?keep_current=true", bob_token, 204),
        ("POST", "/api/v1/logout", bob_token, 204),
    ]:
        assert (await api.call(method, path, token))[0] == status, (method, path)

    expected = [
        ("register", owner, None, "ok"),
        ("login", owner, None, "ok"),
        ("register", bob, None, "ok"),
        ("login", bob, None, "ok"),
        ("register", owner, None, "conflict"),
        ("login_failed", owner, None, "unauthorized"),
        ("login_failed", "nobody-here", None, "unauthorized"),
        ("login_failed", owner, None, "rate_limited"),
        ("invite", owner, room, "ok"),
        ("promote", bob, room, "forbidden"),
        ("promote", owner, room, "ok"),
        ("demote", owner, room, "ok"),
        ("kick", owner, room, "ok"),
        ("ban", owner, room, "ok"),
        ("unban", owner, room, "ok"),
        ("session_revoked", bob, None, "not_found"),
        ("sessions_revoked_all", bob, None, "ok"),
        ("logout", bob, None, "ok"),
    ]

    async def fetch() -> list[dict[str, Any]]:
        return node.audit_events()

    events = await wait_for(fetch, lambda found: len(found) >= len(expected), what="audit lines")
    assert [(e["event"], e["actor"], e["room"], e["outcome"]) for e in events] == expected
    for entry in events:
        assert set(entry) >= FIELDS, entry
        assert entry["level"] == "info" and isinstance(entry["at"], int)
    assert next(e for e in events if e["event"] == "sessions_revoked_all")["count"] == 0
    failed = [e for e in events if e["event"] == "login_failed"]
    assert [e["reason"] for e in failed] == ["bad_password", "unknown_user", "throttled"]
    assert {(e["address"], e["user_agent"]) for e in failed} == {("192.0.2.7", "audit-test/1")}
    assert events[-4]["target"] == bob and events[-5]["target"] == bob  # the kick, the ban
    assert next(e for e in events if e["event"] == "login")["target"]  # the session id
    log = node.log()
    assert SECRET not in log and PASSWORD not in log
    assert owner_token not in log and bob_token not in log
