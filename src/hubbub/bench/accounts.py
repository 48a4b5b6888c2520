"""Accounts for the bench's connections: tokens from hubbub's HTTP API, or bare user names.

`api`: users `<prefix><n>` are registered with a fixed password (an existing one, from an
earlier run, is kept: runs can be repeated) and log in; the rooms are created
(already existing ones are reused) and every user joins the rooms it will
connect to, all through `/api/v1`. What the setup created (`Created`) is what
`remove` deletes afterwards: its rooms, then its accounts. `names`: the token is the user name, for
servers without accounts (the raw peers, Socket.IO servers); rooms need no
creation there.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import aiohttp

Accounts = Literal["api", "names"]
ACCOUNTS: tuple[Accounts, ...] = ("api", "names")
DEFAULT_PASSWORD = "hubbub-bench-password"
RETRIES = 10  # for 429 and 503 answers
PARALLEL = 8  # requests in flight while setting up and cleaning up
CLEANUP_TIMEOUT = 30.0  # seconds for the whole cleanup
CLEANUP_REQUEST_TIMEOUT = 10.0


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
    """The sentence naming the server's limit behind refusals of `path`, or ""."""
    flag = next((f for p, f in LIMITS.items() if path.startswith(p)), None)
    return f"the server's {flag} sets this limit" if flag else ""


@dataclass
class Created:
    """What the setup added to the server (filled as it goes, so a failed or interrupted
    setup still knows): the accounts it registered and the rooms it created with their
    owner's index. Existing accounts and rooms it only used are never in here."""

    users: list[int] = field(default_factory=list)
    rooms: dict[str, int] = field(default_factory=dict)
    tokens: dict[int, str] = field(default_factory=dict)  # of every user logged in

    def __bool__(self) -> bool:
        return bool(self.users or self.rooms)

    def describe(self) -> str:
        return f"{_count(len(self.rooms), 'room')} and {_count(len(self.users), 'account')}"


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class Answer:
    """One answer of the server, in words: status, code, message, the wait it asks for,
    and the flag of the server's limit behind it."""

    text: str
    hint: str = ""


def _answer(status: int, text: str, path: str, headers: Any) -> Answer:
    if status < 400:
        return Answer(str(status))
    try:
        error = json.loads(text)["error"]
        words = f"{status} {error['code']} {str(error['message'])!r}"
    except (ValueError, KeyError, TypeError):
        words = f"{status} {text[:200]!r}"
    if "Retry-After" in headers:
        words += f" (retry after {headers['Retry-After']} s)"
    return Answer(words, _limit_hint(path))


Answered = Callable[[Answer], None]


async def _request(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    answered: Answered,
    longest_wait: float = LONGEST_WAIT,
    **kw: Any,
) -> tuple[int, str]:
    """The status and body of a request, after waiting out 429 and 503 answers that ask
    for at most `longest_wait` seconds (a longer wait is an AccountError)."""
    for _ in range(RETRIES):
        async with http.request(method, path, **kw) as r:
            text = await r.text()
            answered(_answer(r.status, text, path, r.headers))
            if r.status in (429, 503):
                hint = _limit_hint(path)
                wait = float(r.headers.get("Retry-After", "1") or 1)
                if wait > longest_wait:
                    raise AccountError(
                        f"{method} {path} answered {r.status} and asks to wait {wait:.0f} s: "
                        f"{_message(text)}{'; ' if hint else ''}{hint}"
                    )
                await asyncio.sleep(wait)
                continue
            return r.status, text
    raise AccountError(f"{method} {path}: still refused after {RETRIES} tries")


async def _call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    ok: tuple[int, ...],
    answered: Answered,
    **kw: Any,
) -> tuple[int, Any]:
    """The status and JSON body of a request whose status must be one of `ok`."""
    status, text = await _request(http, method, path, answered, **kw)
    if status not in ok:
        raise AccountError(f"{method} {path} answered {status}: {text[:300]}")
    return status, json.loads(text) if text else None


def _session(base: str, context: ssl.SSLContext | None, **kw: Any) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(ssl=context if context is not None else True)
    return aiohttp.ClientSession(base + "/", connector=connector, **kw)


async def _api_tokens(
    base: str,
    names: list[str],
    password: str,
    memberships: dict[str, set[int]],
    parallel: int,
    context: ssl.SSLContext | None,
    progress: Callable[[int], None],
    answered: Answered,
    created: Created,
) -> list[str]:
    gate = asyncio.Semaphore(parallel)
    async with _session(base, context) as http:

        async def token(user: int) -> str:
            cred = {"username": names[user], "password": password}
            async with gate:
                # Registering first (409: it exists from an earlier run): a login is only
                # tried for an account that exists, so the bench never adds to the login
                # throttle's failures, which would lock every user of this address out.
                status, _ = await _call(
                    http, "POST", "api/v1/users", (201, 409), answered, json=cred
                )
                if status == 201:
                    created.users.append(user)
                _, body = await _call(http, "POST", "api/v1/login", (200, 401), answered, json=cred)
            if body is None or "token" not in body:
                raise AccountError(
                    f"user {names[user]!r} exists with another password: choose another "
                    "--user-prefix, or give its --password"
                )
            created.tokens[user] = str(body["token"])
            progress(1)
            return str(body["token"])

        tokens = list(await asyncio.gather(*(token(n) for n in range(len(names)))))

        async def join(room: str, user: int) -> None:
            auth = {"Authorization": f"Bearer {tokens[user]}"}
            path = f"api/v1/rooms/{quote(room)}/members/{quote(names[user])}"
            async with gate:
                await _call(http, "PUT", path, (200, 201, 204), answered, headers=auth)

        for room, users in memberships.items():
            if not users:
                continue
            owner = min(users)
            status, _ = await _call(
                http,
                "POST",
                "api/v1/rooms",
                (201, 409),
                answered,
                json={"name": room},
                headers={"Authorization": f"Bearer {tokens[owner]}"},
            )
            if status == 201:
                created.rooms[room] = owner
            await asyncio.gather(*(join(room, u) for u in users))
            progress(0)
    return tokens


def api_tokens(
    base: str,
    names: list[str],
    password: str,
    memberships: dict[str, set[int]],
    context: ssl.SSLContext | None = None,
    parallel: int = PARALLEL,
    progress: Callable[[int], None] = lambda n: None,
    answered: Answered = lambda a: None,
    created: Created | None = None,
) -> list[str]:
    """Register (keeping existing accounts) and log in every user, create the rooms, add
    the users to their rooms.

    `memberships` maps each room to the indexes of the users that join it. Returns
    the tokens by user index; `progress(1)` is called per user logged in, `progress(0)`
    per room set up, `answered` with every answer of the server. What is new on the
    server is recorded in `created` as it happens.
    """
    return asyncio.run(
        _api_tokens(
            base,
            names,
            password,
            memberships,
            parallel,
            context,
            progress,
            answered,
            created if created is not None else Created(),
        )
    )


def _cannot_delete(status: int, text: str) -> bool:
    """The answer of a server without the route: 405 (the path has other methods), or
    404 "no route"."""
    return status == 405 or (status == 404 and "no route" in _message(text))


async def _remove(
    base: str,
    names: list[str],
    password: str,
    created: Created,
    parallel: int,
    context: ssl.SSLContext | None,
    outcome: Removal,
) -> None:
    gate = asyncio.Semaphore(parallel)
    timeout = aiohttp.ClientTimeout(total=CLEANUP_REQUEST_TIMEOUT)
    ignore: Answered = lambda a: None  # noqa: E731

    async def delete(path: str, token: str, **kw: Any) -> tuple[int, str]:
        auth = {"Authorization": f"Bearer {token}"}
        async with gate:
            return await _request(http, "DELETE", path, ignore, 1.0, headers=auth, **kw)

    def unsupported(kind: str) -> bool:
        """Whether an earlier answer showed the server has no such deletion: not asked again."""
        return kind in outcome.unsupported

    async def room(name: str, owner: int) -> None:
        token = created.tokens.get(owner)
        if unsupported("rooms"):
            return
        if token is None:
            outcome.errors.append(f"#{name}: its owner {names[owner]} is not logged in")
            return
        status, text = await delete(f"api/v1/rooms/{quote(name)}", token)
        if _cannot_delete(status, text):
            outcome.unsupported.add("rooms")
        elif status in (204, 404):  # 404: already gone
            outcome.rooms += 1
        else:
            outcome.errors.append(f"#{name}: {status} {_message(text)}")

    async def account(user: int) -> None:
        token = created.tokens.get(user)
        if unsupported("accounts"):
            return
        if token is None:  # registered, but the setup stopped before its login
            cred = {"username": names[user], "password": password}
            async with gate:
                status, text = await _request(http, "POST", "api/v1/login", ignore, 1.0, json=cred)
            if status != 200:
                outcome.errors.append(
                    f"{names[user]}: its login answered {status} {_message(text)}"
                )
                return
            token = str(json.loads(text)["token"])
        status, text = await delete("api/v1/me", token, json={"password": password})
        if status == 204:
            outcome.accounts += 1
        elif _cannot_delete(status, text):
            outcome.unsupported.add("accounts")
        else:
            outcome.errors.append(f"{names[user]}: {status} {_message(text)}")

    async def guarded(step: Awaitable[None], what: str) -> None:
        try:
            await step
        except (AccountError, aiohttp.ClientError, TimeoutError) as exc:
            outcome.errors.append(f"{what}: {exc or type(exc).__name__}")

    async with _session(base, context, timeout=timeout) as http:
        # Rooms first: their owners' tokens end with their accounts.
        await asyncio.gather(*(guarded(room(r, o), f"#{r}") for r, o in created.rooms.items()))
        await asyncio.gather(*(guarded(account(u), names[u]) for u in created.users))


@dataclass
class Removal:
    """What a cleanup removed, and why the rest remains."""

    rooms: int = 0
    accounts: int = 0
    unsupported: set[str] = field(default_factory=set)  # "rooms", "accounts"
    errors: list[str] = field(default_factory=list)
    interrupted: str = ""

    def report(self, created: Created) -> str:
        """One line: what was removed, and what remains and why."""
        done = (
            f"cleanup: removed {_count(self.rooms, 'room')} and {_count(self.accounts, 'account')}"
        )
        left_rooms, left_users = len(created.rooms) - self.rooms, len(created.users) - self.accounts
        if not left_rooms and not left_users:
            return done
        why = []
        if self.unsupported:
            kinds = " or ".join(k for k in ("rooms", "accounts") if k in self.unsupported)
            why.append(f"this server cannot delete {kinds}")
        if self.interrupted:
            why.append(self.interrupted)
        if self.errors:
            shown = "; ".join(self.errors[:3])
            more = f" (and {len(self.errors) - 3} more)" if len(self.errors) > 3 else ""
            why.append(f"refused: {shown}{more}")
        left = (
            f"{_count(left_rooms, 'bench room')} and {_count(left_users, 'bench account')} remain"
        )
        return f"{done}; {', '.join(why)}; {left}"


def remove(
    base: str,
    names: list[str],
    password: str,
    created: Created,
    context: ssl.SSLContext | None = None,
    parallel: int = PARALLEL,
    limit: float = CLEANUP_TIMEOUT,
) -> Removal:
    """Delete what the setup created: its rooms (each by its owner), then its accounts.
    Never raises; gives up after `limit` seconds (and at Ctrl-C) and says so."""
    outcome = Removal()

    async def bounded() -> None:
        await asyncio.wait_for(
            _remove(base, names, password, created, parallel, context, outcome), limit
        )

    try:
        asyncio.run(bounded())
    except TimeoutError:
        outcome.interrupted = f"it stopped after {limit:.0f} s"
    except KeyboardInterrupt:
        outcome.interrupted = "it was interrupted"
    except OSError as exc:
        outcome.errors.append(str(exc))
    return outcome


def memberships(pairs: Iterable[tuple[int, str]]) -> dict[str, set[int]]:
    """(user index, room) pairs as room -> user indexes."""
    rooms: dict[str, set[int]] = {}
    for user, room in pairs:
        rooms.setdefault(room, set()).add(user)
    return rooms
