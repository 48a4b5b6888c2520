"""The account rules: registration, login, tokens and sessions, account deletion.

Security events are audited here, where the rule decides (`core.audit`): callers pass
the `Client` a request came from.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from hubbub.core.audit import Client, audit, audited
from hubbub.core.state import ChatState
from hubbub.engine.base import LoginSession
from hubbub.protocol.bodies import AccountDeletion, Registration, convert
from hubbub.protocol.errors import BadRequest, NotFound, ProtocolError, RateLimited, Unauthorized
from hubbub.protocol.frames import valid_username

TOUCH_EVERY_MS = 60_000
"""A token's `last_used_at` is written at most this often (a write per use would cost an
fsync per request); it is as fresh as the list of sessions needs."""

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def token_hash(token: str) -> str:
    """Tokens carry 256 random bits, so a plain SHA-256 is the right way to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


def session_view(s: LoginSession, current: str) -> dict[str, Any]:
    return {
        "id": s.id,
        "created": s.created_at,
        "last_used": s.last_used_at,
        "expires": s.expires_at,
        "user_agent": s.user_agent,
        "address": s.address,
        "current": s.token_hash == current,
    }


class Accounts(ChatState):
    """Who a user is: accounts, their tokens and the sessions those tokens are."""

    async def register(
        self, username: Any, password: Any, client: Client | None = None
    ) -> dict[str, Any]:
        actor = username if isinstance(username, str) and valid_username(username) else None
        try:
            user = await self._register(username, password)
        except ProtocolError as exc:
            audit("register", actor=actor, client=client, outcome=exc.code)
            raise
        audit("register", actor=user["name"], client=client)
        return user

    async def _register(self, username: Any, password: Any) -> dict[str, Any]:
        new = convert({"username": username, "password": password}, Registration)
        # Hashed before the name is tried: a taken name costs the same time as a free one.
        hashed = await self.passwords.hash(new.password)
        user = await self.store.create_user(new.username, hashed, self.now_ms())
        return {"name": user.name}

    async def login(
        self, username: Any, password: Any, client: Client | None = None
    ) -> tuple[str, dict[str, Any]]:
        """A new token for the right password; throttled per address and per account."""
        if not isinstance(username, str) or not isinstance(password, str):
            raise BadRequest("username and password must be strings")
        client = client or Client()
        # A string that is no username may be a password typed in the wrong field: not logged.
        actor = username if valid_username(username) else None
        keys = self.throttle.keys(username, client.address)
        try:
            await self.throttle.check(keys)
        except RateLimited:
            audit(
                "login_failed",
                actor=actor,
                client=client,
                outcome="rate_limited",
                reason="throttled",
            )
            raise
        user = await self.store.get_user(username) if actor else None
        stored = user.password_hash if user else self.passwords.dummy_hash  # same cost either way
        if not await self.passwords.verify(stored, password) or user is None:
            await self.throttle.failed(keys)
            reason = "unknown_user" if user is None else "bad_password"
            audit("login_failed", actor=actor, client=client, outcome="unauthorized", reason=reason)
            raise Unauthorized("wrong username or password")
        await self.throttle.succeeded(keys)
        if self.passwords.needs_rehash(stored):
            await self.store.set_password_hash(user.name, await self.passwords.hash(password))
            audit("password_rehashed", actor=user.name, client=client)
        token = secrets.token_urlsafe(32)
        session_id = secrets.token_urlsafe(12)
        now = self.now_ms()
        await self.store.create_token(
            token_hash(token),
            user.name,
            now,
            now + self.token_ttl * 1000,
            session_id=session_id,
            user_agent=client.user_agent,
            address=client.address,
        )
        audit("login", actor=user.name, client=client, target=session_id)
        return token, {"name": user.name}

    async def authenticate(self, token: Any) -> tuple[str, str]:
        """The user a token belongs to, and the token's hash; raises Unauthorized."""
        if not isinstance(token, str) or not token or len(token) > 256 or not token.isascii():
            raise Unauthorized("missing or malformed token")
        hashed = token_hash(token)
        now = self.now_ms()
        cached = self._tokens.get(hashed, now)
        if cached is not None:
            return cached, hashed
        found = await self.store.token_session(hashed, now)
        if found is None:
            raise Unauthorized("invalid, expired or revoked token")
        if now - found.last_used_at >= TOUCH_EVERY_MS:
            await self.store.touch_token(hashed, now)
        self._tokens.put(hashed, found.user, found.expires_at, now)
        return found.user, hashed

    async def logout(
        self, hashed: str, *, user: str | None = None, client: Client | None = None
    ) -> None:
        """Revoke the token `hashed` (of `user`, who is logging out)."""
        await self.store.delete_token(hashed)
        self._revoked(hashed)
        audit("logout", actor=user, client=client)

    def _revoked(self, hashed: str) -> None:
        """Forget the token here, and close its WebSockets (4001) on every node."""
        self._tokens.forget(hashed)
        self.bus.publish_token_revoked(hashed)

    def forget_token(self, hashed: str) -> None:
        """Drop a token revoked on another node (or this one) from this node's cache."""
        self._tokens.forget(hashed)

    async def sessions(self, user: str, current: str) -> list[dict[str, Any]]:
        """The user's live tokens; `current` (a token hash) is the one asking."""
        return [session_view(s, current) for s in await self.store.sessions(user, self.now_ms())]

    async def revoke_session(
        self, user: str, session_id: str, client: Client | None = None
    ) -> None:
        """Revoke one of the user's sessions; NotFound for an unknown id or someone else's."""
        with audited("session_revoked", user, client, target=session_id):
            hashed = None
            if SESSION_ID.match(session_id):
                hashed = await self.store.delete_session(user, session_id)
            if hashed is None:
                raise NotFound(f"no session {session_id!r}")
            self._revoked(hashed)

    async def revoke_sessions(
        self, user: str, keep: str | None, client: Client | None = None
    ) -> int:
        """Revoke every session of the user but the token `keep` (a hash); how many went."""
        revoked = await self.store.delete_sessions(user, keep)
        for hashed in revoked:
            self._revoked(hashed)
        audit(
            "sessions_revoked_all",
            actor=user,
            client=client,
            reason="kept current" if keep else None,
            count=len(revoked),
        )
        return len(revoked)

    async def delete_account(
        self, user: str, data: dict[str, Any], client: Client | None = None
    ) -> None:
        """Delete the user's account once its password is given (throttled as logins are):
        tokens revoked (their WebSockets close with 4001 on every node), memberships and
        bans gone; the name stays taken for good, and sent messages keep their sender."""
        with audited("account_deleted", user, client):
            deletion = convert(data, AccountDeletion)
            keys = self.throttle.keys(user, (client or Client()).address)
            await self.throttle.check(keys)
            account = await self.store.get_user(user)
            stored = account.password_hash if account else self.passwords.dummy_hash
            if not await self.passwords.verify(stored, deletion.password) or account is None:
                await self.throttle.failed(keys)
                raise Unauthorized("wrong password: the account was not deleted")
            await self.throttle.succeeded(keys)
            for hashed in await self.store.delete_user(account.name, self.now_ms()):
                self._revoked(hashed)
