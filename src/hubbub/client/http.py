"""The HTTP half of the Python SDK: the error type and one method per `/api/v1` call."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson


class HubbubError(Exception):
    """A protocol error, from an HTTP error body or a WebSocket `error` frame.

    `code` is the protocol's error code (`unauthorized`, `rate_limited`, ...). The SDK uses two
    codes of its own: `unavailable` when the connection is lost and reconnecting is off, and
    `closed` when the client was closed (or never connected) while a call waited.
    """

    def __init__(
        self,
        code: str,
        message: str = "",
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> HubbubError:
        retry_after = frame.get("retry_after")
        return cls(
            str(frame.get("code", "internal")),
            str(frame.get("message", "")),
            retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
        )


def _segment(name: str) -> str:
    return quote(name, safe="")


class HttpApi:
    """Typed wrappers over the HTTP API; `token` is sent as a Bearer token when set."""

    def __init__(self, url: str, token: str | None, session: aiohttp.ClientSession | None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self._session = session
        self._owns_session = session is None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session: the one given, or one created (and later closed) by the SDK."""
        if self._session is None or (self._owns_session and self._session.closed):
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def close_session(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _http(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: Mapping[str, int | str] | None = None,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        url = f"{self.url}/api/v1{path}"
        async with self.session.request(
            method, url, data=data, params=params, headers=headers
        ) as response:
            raw = await response.read()
            if response.status >= 400:
                raise _http_error(response, raw)
            return orjson.loads(raw) if raw else None

    async def register(self, username: str, password: str) -> dict[str, Any]:
        """Create an account; returns the user object."""
        body = await self._http("POST", "/users", {"username": username, "password": password})
        user: dict[str, Any] = body["user"]
        return user

    async def login(self, username: str, password: str) -> dict[str, Any]:
        """Log in and keep the token for later calls; returns `{"token", "user"}`."""
        body: dict[str, Any] = await self._http(
            "POST", "/login", {"username": username, "password": password}
        )
        self.token = body["token"]
        return body

    async def logout(self) -> None:
        """Revoke this client's token (this also closes its WebSocket with 4001)."""
        await self._http("POST", "/logout")
        self.token = None

    async def me(self) -> dict[str, Any]:
        """`{"user": {...}, "rooms": [...]}` for the logged-in user."""
        body: dict[str, Any] = await self._http("GET", "/me")
        return body

    async def create_room(
        self, name: str, topic: str | None = None, private: bool = False
    ) -> dict[str, Any]:
        """Create a room (the caller becomes its owner); returns the room object."""
        payload: dict[str, Any] = {"name": name, "private": private}
        if topic is not None:
            payload["topic"] = topic
        body = await self._http("POST", "/rooms", payload)
        room: dict[str, Any] = body["room"]
        return room

    async def rooms(self, archived: bool = False) -> list[dict[str, Any]]:
        """Public rooms and the rooms the caller belongs to; with `archived`, the archived
        ones among them instead (the others leave them out)."""
        params: dict[str, int | str] | None = {"archived": "true"} if archived else None
        body = await self._http("GET", "/rooms", params=params)
        rooms: list[dict[str, Any]] = body["rooms"]
        return rooms

    async def _change_room(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        body = await self._http("PATCH", f"/rooms/{_segment(name)}", changes)
        room: dict[str, Any] = body["room"]
        return room

    async def archive_room(self, name: str) -> dict[str, Any]:
        """Archive a room (owner only): read-only and out of the lists; the room object."""
        return await self._change_room(name, {"archived": True})

    async def unarchive_room(self, name: str) -> dict[str, Any]:
        """Undo `archive_room` (owner only); the room object."""
        return await self._change_room(name, {"archived": False})

    async def delete_room(self, name: str) -> None:
        """Delete a room (owner only): its messages are redacted and it answers not_found
        from then on; its name is free again after the server's grace period."""
        await self._http("DELETE", f"/rooms/{_segment(name)}")

    async def delete_account(self, password: str) -> None:
        """Delete the logged-in account (its password confirms it): every token of it is
        revoked, this client's too; the name is never given out again."""
        await self._http("DELETE", "/me", {"password": password})
        self.token = None

    async def room(self, name: str) -> dict[str, Any]:
        """One room: `name, topic, private, owner, members, last_seq`, ..."""
        body: dict[str, Any] = await self._http("GET", f"/rooms/{_segment(name)}")
        # hubbub wraps it as `{"room": {...}}`, like POST /rooms; the spec's table reads either way.
        room = body.get("room")
        return room if isinstance(room, dict) else body

    async def bans(self, room: str) -> list[Any]:
        """The names banned from a room (owner or moderator)."""
        body = await self._http("GET", f"/rooms/{_segment(room)}/bans")
        users: list[Any] = body["users"]
        return users

    async def _room_user(self, method: str, room: str, what: str, user: str) -> None:
        await self._http(method, f"/rooms/{_segment(room)}/{what}/{_segment(user)}")

    async def add_member(self, room: str, user: str) -> None:
        """Join a public room (yourself) or invite someone (owner or moderator)."""
        await self._room_user("PUT", room, "members", user)

    async def remove_member(self, room: str, user: str) -> None:
        """Leave a room (yourself) or kick someone (owner or moderator)."""
        await self._room_user("DELETE", room, "members", user)

    async def ban(self, room: str, user: str) -> None:
        await self._room_user("PUT", room, "bans", user)

    async def unban(self, room: str, user: str) -> None:
        await self._room_user("DELETE", room, "bans", user)

    async def promote(self, room: str, user: str) -> None:
        """Make a member a moderator (owner only)."""
        await self._room_user("PUT", room, "moderators", user)

    async def demote(self, room: str, user: str) -> None:
        """Make a moderator a plain member again (owner only)."""
        await self._room_user("DELETE", room, "moderators", user)

    async def history(
        self,
        room: str,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """One page of history over HTTP: `{"messages": [...], "more": bool}`."""
        bounds = {"before": before, "after": after, "limit": limit}
        params = {key: value for key, value in bounds.items() if value is not None}
        body: dict[str, Any] = await self._http(
            "GET", f"/rooms/{_segment(room)}/messages", params=params
        )
        return body

    async def presence(self, room: str) -> list[Any]:
        """Who is online in the room now."""
        body = await self._http("GET", f"/rooms/{_segment(room)}/presence")
        users: list[Any] = body["users"]
        return users


# Used when an error answer has no JSON body (a proxy in front of the server, say).
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    429: "rate_limited",
    503: "unavailable",
}


def _http_error(response: aiohttp.ClientResponse, raw: bytes) -> HubbubError:
    code = _STATUS_CODES.get(response.status, "internal")
    message = raw.decode(errors="replace")[:200]
    with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        error = orjson.loads(raw)["error"]
        code, message = str(error["code"]), str(error.get("message", ""))
    retry_after = None
    with contextlib.suppress(ValueError):
        retry_after = float(response.headers.get("Retry-After", ""))
    return HubbubError(code, message, status=response.status, retry_after=retry_after)
