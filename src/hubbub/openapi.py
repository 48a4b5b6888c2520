"""The OpenAPI 3 description of the HTTP API, served at /api/openapi.json."""

from __future__ import annotations

from functools import cache
from typing import Any

from hubbub import __version__

_ERROR = {"$ref": "#/components/responses/Error"}
_OBJ: dict[str, Any] = {"type": "object"}


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


@cache
def openapi_document() -> dict[str, Any]:
    room = [_path_param("room")]
    room_user = [_path_param("room"), _path_param("user")]
    room_body = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
            "topic": {"type": "string"},
            "private": {"type": "boolean"},
        },
    }
    paths: dict[str, Any] = {
        "/api/v1/users": {
            "post": _op("Register", "201", body=_credentials(), auth=False, errors=("400", "409"))
        },
        "/api/v1/login": {
            "post": _op("Log in", "200", body=_credentials(), auth=False, errors=("400", "401"))
        },
        "/api/v1/logout": {"post": _op("Revoke this token", "204", errors=("401",))},
        "/api/v1/me": {"get": _op("Who am I, and my rooms", "200", errors=("401",))},
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
                                            "code": {"type": "string"},
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
