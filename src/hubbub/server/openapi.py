"""The OpenAPI 3 description of the HTTP API, served at /api/openapi.json."""

from __future__ import annotations

from functools import cache
from typing import Any

from hubbub import __version__

_ERROR = {"$ref": "#/components/responses/Error"}
_OBJ: dict[str, Any] = {"type": "object"}
# The error codes of the protocol's error table: the only codes an error body carries.
_CODES = [
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "not_joined",
    "too_large",
    "rate_limited",
    "conflict",
    "unavailable",
    "internal",
]


def _credentials() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["username", "password"],
        "properties": {
            "username": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,32}$"},
            "password": {"type": "string", "minLength": 8, "maxLength": 1024},
        },
    }


def _op(
    summary: str,
    ok: str,
    *,
    body: dict[str, Any] | None = None,
    auth: bool = True,
    errors: tuple[str, ...] = ("400", "401", "403", "404"),
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {ok: {"description": "success"}}
    if ok != "204":
        responses[ok]["content"] = {"application/json": {"schema": _OBJ}}
    for code in errors:
        responses[code] = _ERROR
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if not auth:
        op["security"] = []
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query_int(name: str, minimum: int, maximum: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _shape(properties: dict[str, Any]) -> dict[str, Any]:
    """An object with these properties, all required (a client ignores any others)."""
    return {"type": "object", "required": sorted(properties), "properties": properties}


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


_STR: dict[str, Any] = {"type": "string"}
_INT: dict[str, Any] = {"type": "integer"}
# The objects of docs/protocol.md ("Objects"), so response bodies are checked field by field.
_SCHEMAS: dict[str, Any] = {
    "User": _shape({"name": _STR}),
    "Room": _shape(
        {
            "name": _STR,
            "topic": _STR,
            "private": {"type": "boolean"},
            "owner": _STR,
            "moderators": _array(_STR),
            "members": _array(_STR),
            "last_seq": _INT,
            "created_at": _INT,
        }
    ),
    "Message": _shape(
        {"room": _STR, "seq": _INT, "id": _STR, "from": _STR, "body": _STR, "ts": _INT}
    ),
    "Status": _shape({"status": _STR}),
    "Session": _shape(
        {
            "id": _STR,
            "created": _INT,
            "last_used": _INT,
            "expires": _INT,
            "user_agent": _STR,
            "address": _STR,
            "current": {"type": "boolean"},
        }
    ),
}
# The success body of each operation that has one (keyed by path and method).
_RESULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("/api/v1/users", "post"): _shape({"user": _ref("User")}),
    ("/api/v1/login", "post"): _shape({"token": _STR, "user": _ref("User")}),
    ("/api/v1/me", "get"): _shape({"user": _ref("User"), "rooms": _array(_ref("Room"))}),
    ("/api/v1/me/sessions", "get"): _shape({"sessions": _array(_ref("Session"))}),
    ("/api/v1/rooms", "post"): _shape({"room": _ref("Room")}),
    ("/api/v1/rooms", "get"): _shape({"rooms": _array(_ref("Room"))}),
    ("/api/v1/rooms/{room}", "get"): _shape({"room": _ref("Room")}),
    ("/api/v1/rooms/{room}/bans", "get"): _shape({"users": _array(_STR)}),
    ("/api/v1/rooms/{room}/messages", "get"): _shape(
        {"messages": _array(_ref("Message")), "more": {"type": "boolean"}}
    ),
    ("/api/v1/rooms/{room}/presence", "get"): _shape({"users": _array(_STR)}),
    ("/healthz", "get"): _ref("Status"),
    ("/readyz", "get"): _ref("Status"),
}


def _attach_results(paths: dict[str, Any]) -> None:
    for (path, method), schema in _RESULTS.items():
        for status, response in paths[path][method]["responses"].items():
            if status.startswith("2"):
                response["content"] = {"application/json": {"schema": schema}}
    # /readyz answers 503 with its status ("starting" or "draining"), not an error body.
    paths["/readyz"]["get"]["responses"]["503"] = {
        "description": "starting or draining",
        "content": {"application/json": {"schema": _ref("Status")}},
    }


@cache
def openapi_document() -> dict[str, Any]:
    room = [_path_param("room")]
    room_user = [_path_param("room"), _path_param("user")]
    room_body = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
            # null is taken as absent: no topic, not private.
            "topic": {"type": "string", "maxLength": 1000, "nullable": True},
            "private": {"type": "boolean", "nullable": True},
        },
    }
    paths: dict[str, Any] = {
        "/api/v1/users": {
            "post": _op("Register", "201", body=_credentials(), auth=False, errors=("400", "409"))
        },
        "/api/v1/login": {
            "post": _op(
                "Log in (429 rate_limited, with Retry-After, after too many failures)",
                "200",
                body=_credentials(),
                auth=False,
                errors=("400", "401", "429"),
            )
        },
        "/api/v1/logout": {"post": _op("Revoke this token", "204", errors=("401",))},
        "/api/v1/me": {"get": _op("Who am I, and my rooms", "200", errors=("401",))},
        "/api/v1/me/sessions": {
            "get": _op("My live tokens (sessions), the newest first", "200", errors=("401",)),
            "delete": _op(
                "Revoke all my sessions (keep_current=true keeps the calling one)",
                "204",
                errors=("400", "401"),
                params=[
                    {
                        "name": "keep_current",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "boolean"},
                    }
                ],
            ),
        },
        "/api/v1/me/sessions/{id}": {
            "delete": _op(
                "Revoke one of my sessions (its WebSockets close with 4001)",
                "204",
                errors=("401", "404"),
                params=[_path_param("id")],
            )
        },
        "/api/v1/rooms": {
            "post": _op("Create a room", "201", body=room_body, errors=("400", "401", "409")),
            "get": _op("Public rooms and my rooms", "200", errors=("401",)),
        },
        "/api/v1/rooms/{room}": {"get": _op("One room", "200", params=room)},
        "/api/v1/rooms/{room}/members/{user}": {
            "put": _op("Join (self) or invite", "204", params=room_user),
            "delete": _op("Leave (self) or kick", "204", params=room_user),
        },
        "/api/v1/rooms/{room}/bans/{user}": {
            "put": _op("Ban", "204", params=room_user),
            "delete": _op("Unban", "204", params=room_user),
        },
        "/api/v1/rooms/{room}/bans": {"get": _op("Banned users", "200", params=room)},
        "/api/v1/rooms/{room}/moderators/{user}": {
            "put": _op("Promote a member to moderator (owner)", "204", params=room_user),
            "delete": _op("Demote a moderator (owner)", "204", params=room_user),
        },
        "/api/v1/rooms/{room}/messages": {
            "get": _op(
                "History page",
                "200",
                params=[
                    *room,
                    _query_int("before", 0),
                    _query_int("after", 0),
                    _query_int("limit", 1, 200),
                ],
            ),
        },
        "/api/v1/rooms/{room}/presence": {"get": _op("Who is online", "200", params=room)},
        "/healthz": {"get": _op("Liveness", "200", auth=False, errors=())},
        "/readyz": {
            "get": _op(
                "Readiness (503 while starting or draining)", "200", auth=False, errors=("503",)
            )
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "security": [],
                "responses": {"200": {"description": "text format"}},
            }
        },
    }
    _attach_results(paths)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "hubbub",
            "version": __version__,
            "description": "Chat rooms over HTTP and WebSocket (/ws); see docs/protocol.md",
        },
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
            "responses": {
                "Error": {
                    "description": "an error: {error: {code, message}}",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["error"],
                                "properties": {
                                    "error": {
                                        "type": "object",
                                        "required": ["code", "message"],
                                        "properties": {
                                            "code": {"type": "string", "enum": _CODES},
                                            "message": {"type": "string"},
                                            "retry_after": {"type": "number"},
                                        },
                                    }
                                },
                            }
                        }
                    },
                }
            },
        },
    }
