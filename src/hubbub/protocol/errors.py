"""One exception type per protocol error code, and their HTTP statuses."""

from __future__ import annotations

import math
from typing import Any, ClassVar


class ProtocolError(Exception):
    """An error the client is told about: a code from the protocol's error table."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code.replace("_", " "))
        self.message = message or self.code.replace("_", " ")

    def payload(self) -> dict[str, Any]:
        """The fields of the error (shared by the WebSocket frame and the HTTP body)."""
        return {"code": self.code, "message": self.message}


class BadRequest(ProtocolError):
    code = "bad_request"
    status = 400


class Unauthorized(ProtocolError):
    code = "unauthorized"
    status = 401


class Forbidden(ProtocolError):
    code = "forbidden"
    status = 403


class NotFound(ProtocolError):
    code = "not_found"
    status = 404


class NotJoined(ProtocolError):
    code = "not_joined"
    status = 409


class TooLarge(ProtocolError):
    code = "too_large"
    status = 413


class RateLimited(ProtocolError):
    code = "rate_limited"
    status = 429

    def __init__(self, retry_after: float, message: str = "") -> None:
        super().__init__(message or "too many frames; slow down")
        self.retry_after = retry_after

    @classmethod
    def after(cls, wait: float, message: str = "") -> RateLimited:
        """`retry_after` from a measured wait, rounded up to the millisecond: never shorter
        than the real wait."""
        return cls(math.ceil(wait * 1000) / 1000, message)

    def payload(self) -> dict[str, Any]:
        return {**super().payload(), "retry_after": self.retry_after}


class Conflict(ProtocolError):
    code = "conflict"
    status = 409


class Unavailable(ProtocolError):
    code = "unavailable"
    status = 503


class Internal(ProtocolError):
    code = "internal"
    status = 500


def token_revoked() -> Unauthorized:
    """What each open connection of a revoked token is told before its 4001 close."""
    return Unauthorized("this token was revoked (logged out)")


# The protocol's error table, in its order: the only codes an error carries.
ERRORS: tuple[type[ProtocolError], ...] = (
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    NotJoined,
    TooLarge,
    RateLimited,
    Conflict,
    Unavailable,
    Internal,
)
ERROR_CODES: tuple[str, ...] = tuple(error.code for error in ERRORS)
