"""Helpers for the in-process server tests (tests/server)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientResponse

PASSWORD = "correct horse battery"

# The `signup` fixture: registers a user by name and returns its token.
Signup = Callable[[str], Awaitable[str]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def error_of(response: ClientResponse, status: int) -> dict[str, Any]:
    """The `error` object of an error response, after checking its status."""
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    return error
