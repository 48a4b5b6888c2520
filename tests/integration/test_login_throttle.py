"""Login throttling (docs/security.md): failures counted per address and per account, 429
`rate_limited` with `retry_after` and Retry-After until the window passes, even for the
right password; X-Forwarded-For believed only from `--trusted-proxies`. (One limit for all
the nodes on one Redis: tests/integration/test_sessions.py, which starts two such nodes.)

Addresses other than 127.0.0.1 come from X-Forwarded-For, with the test as the trusted
proxy. Few logins, each a real argon2 verification.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from support.api import Api
from support.server import ServerProcess

PASSWORD = "correct horse"
LIMIT = 3
WINDOW = 2  # seconds


async def login(
    api: Api, name: str, password: str = PASSWORD, via: str | None = None
) -> tuple[int, Any, str | None]:
    """Status, body and Retry-After of a login, from address `via` (X-Forwarded-For)."""
    headers = {"X-Forwarded-For": via} if via else {}
    async with api.session.post(
        api.base + "/api/v1/login",
        json={"username": name, "password": password},
        headers=headers,
    ) as r:
        return r.status, await r.json(), r.headers.get("Retry-After")


def throttled(result: tuple[int, Any, str | None]) -> int:
    """Assert a 429 rate_limited answer; returns its retry_after."""
    status, body, retry_header = result
    assert status == 429, (status, body)
    error = body["error"]
    assert error["code"] == "rate_limited", body
    assert isinstance(error["retry_after"], int) and 1 <= error["retry_after"] <= 60, body
    assert retry_header == str(error["retry_after"])
    retry: int = error["retry_after"]
    return retry


def behind_proxy(server_factory: Any, window: float) -> ServerProcess:
    """A node that believes the test's X-Forwarded-For (the test is its trusted proxy)."""
    env = {
        "HUBBUB_LOGIN_FAILURES": str(LIMIT),
        "HUBBUB_LOGIN_WINDOW": str(window),
        "HUBBUB_TRUSTED_PROXIES": "127.0.0.1/32, ::1",
    }
    srv: ServerProcess = server_factory(env=env)
    return srv


async def test_an_address_is_refused_after_its_failures_even_with_the_right_password(
    server_factory: Any, on: Callable[[ServerProcess], Api], wait_for: Any
) -> None:
    api = on(behind_proxy(server_factory, WINDOW))
    name, _ = await api.user()
    for _ in range(LIMIT):
        assert (await login(api, name, "wrong password", via="198.51.100.1"))[0] == 401
    throttled(await login(api, name, via="198.51.100.1"))
    throttled(await login(api, "someone-else", via="198.51.100.1"))  # any account
    # The owner, from an address with no failures, is not locked out.
    assert (await login(api, name, via="198.51.100.2"))[0] == 200
    # The window passes: the right password works again from the throttled address.
    await wait_for(
        lambda: login(api, name, via="198.51.100.1"),
        lambda result: result[0] == 200,
        deadline_s=WINDOW + 3,
        what="the window to pass",
    )


async def test_an_account_guessed_from_many_addresses_closes_to_those_addresses_only(
    server_factory: Any, on: Callable[[ServerProcess], Api]
) -> None:
    api = on(behind_proxy(server_factory, 60))
    name, _ = await api.user()
    other, _ = await api.user()
    guessers = [f"203.0.113.{n}" for n in range(1, LIMIT + 1)]
    for address in guessers:
        assert (await login(api, name, "wrong password", via=address))[0] == 401
    for address in guessers:
        throttled(await login(api, name, via=address))
        assert (await login(api, other, via=address))[0] == 200  # below its address limit
    # A fresh address gets one try at the guessed account, then that address is closed.
    assert (await login(api, name, "wrong password", via="203.0.113.99"))[0] == 401
    throttled(await login(api, name, via="203.0.113.99"))
    assert (await login(api, name, via="203.0.113.100"))[0] == 200


async def test_forwarded_for_from_an_untrusted_peer_does_not_escape_the_limit(
    server_factory: Any, on: Callable[[ServerProcess], Api]
) -> None:
    api = on(server_factory(env={"HUBBUB_LOGIN_FAILURES": "2", "HUBBUB_LOGIN_WINDOW": "60"}))
    name, _ = await api.user()
    assert (await login(api, name, "wrong password", via="192.0.2.1"))[0] == 401
    assert (await login(api, name, "wrong password", via="192.0.2.2"))[0] == 401
    status, body, retry = await login(api, name, via="192.0.2.3")
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert 55 <= body["error"]["retry_after"] <= 60 and retry is not None
