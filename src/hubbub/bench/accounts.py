"""Accounts for the bench's connections: tokens from hubbub's HTTP API, or bare user names.

`api`: users `<prefix><n>` log in with a fixed password, and are registered
first when they do not exist yet (so runs can be repeated), the rooms are created
(already existing ones are reused) and every user joins the rooms it will
connect to, all through `/api/v1`. `names`: the token is the user name, for
servers without accounts (the raw peers, Socket.IO servers); rooms need no
creation there.
"""

from __future__ import annotations

import asyncio
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


def user_names(prefix: str, users: int) -> list[str]:
    return [f"{prefix}{n}" for n in range(users)]


async def _call(
    http: aiohttp.ClientSession, method: str, path: str, ok: tuple[int, ...], **kw: Any
) -> Any:
    for _ in range(RETRIES):
        async with http.request(method, path, **kw) as r:
            text = await r.text()
            if r.status in (429, 503):
                await asyncio.sleep(float(r.headers.get("Retry-After", "1") or 1))
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
                # Logging in first: a repeated run hashes each password once, not twice.
                body = await _call(http, "POST", "api/v1/login", (200, 401), json=cred)
                if body is None or "token" not in body:
                    await _call(http, "POST", "api/v1/users", (201, 409), json=cred)
                    body = await _call(http, "POST", "api/v1/login", (200,), json=cred)
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
    """Register (or log in) every user, create the rooms, add the users to their rooms.

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
