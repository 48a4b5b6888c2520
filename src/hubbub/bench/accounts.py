"""Accounts for the bench's connections: tokens from hubbub's HTTP API, or bare user names.

`api`: users `<prefix><n>` are registered with a fixed password (an existing one, from an
earlier run, is kept: runs can be repeated) and log in; the rooms are created
(already existing ones are reused) and every user joins the rooms it will
connect to, all through `/api/v1`. `names`: the token is the user name, for
servers without accounts (the raw peers, Socket.IO servers); rooms need no
creation there.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable, Iterable
from typing import Any, Literal
from urllib.parse import quote

import aiohttp

Accounts = Literal["api", "names"]
ACCOUNTS: tuple[Accounts, ...] = ("api", "names")
DEFAULT_PASSWORD = "hubbub-bench-password"
RETRIES = 10  # for 429 and 503 answers


class AccountError(RuntimeError):
    """The server refused to register, log in, create or join."""


def _message(text: str) -> str:
    """The `error.message` of an error body, or the body's start."""
    try:
        return str(json.loads(text)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return text[:300]


def user_names(prefix: str, users: int) -> list[str]:
    return [f"{prefix}{n}" for n in range(users)]


# The server's limits the account setup can run into, and the flag that relaxes each
# (on the server: `hubbub serve --help`), for a refusal worth more than a short wait.
LIMITS = {
    "api/v1/login": "--login-failures / --login-window (HUBBUB_LOGIN_FAILURES=0 turns it off)",
    "api/v1/rooms": "--rooms-per-hour (HUBBUB_ROOMS_PER_HOUR=0 turns it off)",
}
LONGEST_WAIT = 5.0  # seconds of Retry-After the setup waits out; a longer one is an error


def _limit_hint(path: str) -> str:
    flag = next((f for p, f in LIMITS.items() if path.startswith(p)), None)
    return f"; the server's {flag} sets this limit" if flag else ""


async def _call(
    http: aiohttp.ClientSession, method: str, path: str, ok: tuple[int, ...], **kw: Any
) -> Any:
    for _ in range(RETRIES):
        async with http.request(method, path, **kw) as r:
            text = await r.text()
            if r.status in (429, 503):
                wait = float(r.headers.get("Retry-After", "1") or 1)
                if wait > LONGEST_WAIT:
                    raise AccountError(
                        f"{method} {path} answered {r.status} and asks to wait {wait:.0f} s: "
                        f"{_message(text)}{_limit_hint(path)}"
                    )
                await asyncio.sleep(wait)
                continue
            if r.status not in ok:
                raise AccountError(f"{method} {path} answered {r.status}: {text[:300]}")
            return await r.json(content_type=None) if text else None
    raise AccountError(f"{method} {path}: still refused after {RETRIES} tries")


async def _api_tokens(
    base: str,
    names: list[str],
    password: str,
    memberships: dict[str, set[int]],
    parallel: int,
    context: ssl.SSLContext | None,
    progress: Callable[[int], None],
) -> list[str]:
    gate = asyncio.Semaphore(parallel)
    connector = aiohttp.TCPConnector(ssl=context if context is not None else True)
    async with aiohttp.ClientSession(base + "/", connector=connector) as http:

        async def token(name: str) -> str:
            cred = {"username": name, "password": password}
            async with gate:
                # Registering first (409: it exists from an earlier run): a login is only
                # tried for an account that exists, so the bench never adds to the login
                # throttle's failures, which would lock every user of this address out.
                await _call(http, "POST", "api/v1/users", (201, 409), json=cred)
                body = await _call(http, "POST", "api/v1/login", (200, 401), json=cred)
            if body is None or "token" not in body:
                raise AccountError(
                    f"user {name!r} exists with another password: choose another "
                    "--user-prefix, or give its --password"
                )
            progress(1)
            return str(body["token"])

        tokens = list(await asyncio.gather(*(token(n) for n in names)))

        async def join(room: str, user: int) -> None:
            auth = {"Authorization": f"Bearer {tokens[user]}"}
            path = f"api/v1/rooms/{quote(room)}/members/{quote(names[user])}"
            async with gate:
                await _call(http, "PUT", path, (200, 201, 204), headers=auth)

        for room, users in memberships.items():
            if not users:
                continue
            owner = {"Authorization": f"Bearer {tokens[min(users)]}"}
            await _call(
                http, "POST", "api/v1/rooms", (201, 409), json={"name": room}, headers=owner
            )
            await asyncio.gather(*(join(room, u) for u in users))
            progress(0)
    return tokens


def api_tokens(
    base: str,
    names: list[str],
    password: str,
    memberships: dict[str, set[int]],
    context: ssl.SSLContext | None = None,
    parallel: int = 8,
    progress: Callable[[int], None] = lambda n: None,
) -> list[str]:
    """Register (keeping existing accounts) and log in every user, create the rooms, add
    the users to their rooms.

    `memberships` maps each room to the indexes of the users that join it. Returns
    the tokens by user index; `progress(1)` is called per user logged in.
    """
    return asyncio.run(_api_tokens(base, names, password, memberships, parallel, context, progress))


def memberships(pairs: Iterable[tuple[int, str]]) -> dict[str, set[int]]:
    """(user index, room) pairs as room -> user indexes."""
    rooms: dict[str, set[int]] = {}
    for user, room in pairs:
        rooms.setdefault(room, set()).add(user)
    return rooms
