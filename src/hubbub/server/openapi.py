"""The OpenAPI 3.1 description of the HTTP API, served at /api/openapi.json.

The request and reply schemas are generated from the structs of `protocol.bodies` (so
the document and the validation at the edge cannot disagree) and the error codes come
from `protocol.errors`; this module only lists the operations.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import msgspec

from hubbub import __version__
from hubbub.protocol import bodies
from hubbub.protocol.frames import SEQ_MAX
from hubbub.protocol.rules import HISTORY_MAX_LIMIT

_COMPONENTS = "#/components/schemas/{name}"
_ERROR = {"$ref": "#/components/responses/Error"}
# Python's \A and \Z anchors (the structs' patterns) are ^ and $ in ECMA-262 regexes
# (JSON Schema's), which match only at the ends of the text when not in multiline mode.
_PYTHON_ANCHORS = re.compile(r"\\[AZ]")


def _schema_of(kind: type[msgspec.Struct]) -> dict[str, Any]:
    return {"$ref": _COMPONENTS.format(name=kind.__name__)}


def _json(kind: type[msgspec.Struct]) -> dict[str, Any]:
    return {"application/json": {"schema": _schema_of(kind)}}


def _op(
    summary: str,
    ok: str,
    *,
    body: type[bodies.RequestBody] | None = None,
    result: type[msgspec.Struct] | None = None,
    auth: bool = True,
    errors: tuple[str, ...] = ("400", "401", "403", "404"),
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {ok: {"description": "success"}}
    if result is not None:
        responses[ok]["content"] = _json(result)
    for code in errors:
        responses[code] = _ERROR
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(body)}
    if not auth:
        op["security"] = []
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query_int(name: str, minimum: int, maximum: int) -> dict[str, Any]:
    schema = {"type": "integer", "minimum": minimum, "maximum": maximum}
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _ecma_patterns(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _PYTHON_ANCHORS.sub(lambda m: "^" if m[0] == r"\A" else "$", value)
            if key == "pattern"
            else _ecma_patterns(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_ecma_patterns(item) for item in node]
    return node


def _schemas() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        (
            bodies.Registration,
            bodies.Credentials,
            bodies.NewRoom,
            bodies.RoomChanges,
            bodies.AccountDeletion,
            bodies.UserReply,
            bodies.LoginReply,
            bodies.MeReply,
            bodies.SessionsReply,
            bodies.RoomReply,
            bodies.RoomsReply,
            bodies.UsersReply,
            bodies.HistoryReply,
            bodies.VersionsReply,
            bodies.Status,
            bodies.ErrorReply,
        ),
        ref_template=_COMPONENTS,
    )
    schemas: dict[str, Any] = _ecma_patterns(components)
    return schemas


@cache
def openapi_document() -> dict[str, Any]:
    room = [_path_param("room")]
    room_user = [_path_param("room"), _path_param("user")]
    paths: dict[str, Any] = {
        "/api/v1/users": {
            "post": _op(
                "Register",
                "201",
                body=bodies.Registration,
                result=bodies.UserReply,
                auth=False,
                errors=("400", "409"),
            )
        },
        "/api/v1/login": {
            "post": _op(
                "Log in (429 rate_limited, with Retry-After, after too many failures)",
                "200",
                body=bodies.Credentials,
                result=bodies.LoginReply,
                auth=False,
                errors=("400", "401", "429"),
            )
        },
        "/api/v1/logout": {"post": _op("Revoke this token", "204", errors=("401",))},
        "/api/v1/me": {
            "get": _op(
                "Who am I, and my rooms (archived ones left out)",
                "200",
                result=bodies.MeReply,
                errors=("401",),
            ),
            "delete": _op(
                "Delete my account (the password confirms; 429 after too many wrong ones)",
                "204",
                body=bodies.AccountDeletion,
                errors=("400", "401", "429"),
            ),
        },
        "/api/v1/me/sessions": {
            "get": _op(
                "My live tokens (sessions), the newest first",
                "200",
                result=bodies.SessionsReply,
                errors=("401",),
            ),
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
            "post": _op(
                "Create a room",
                "201",
                body=bodies.NewRoom,
                result=bodies.RoomReply,
                errors=("400", "401", "409"),
            ),
            "get": _op(
                "Public rooms and my rooms (archived=true: the archived ones instead)",
                "200",
                result=bodies.RoomsReply,
                errors=("400", "401"),
                params=[
                    {
                        "name": "archived",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "boolean"},
                    }
                ],
            ),
        },
        "/api/v1/rooms/{room}": {
            "get": _op("One room", "200", result=bodies.RoomReply, params=room),
            "patch": _op(
                "Change a room: archive or unarchive it (owner); set its topic (owner and "
                "moderators: a topic update in its log)",
                "200",
                body=bodies.RoomChanges,
                result=bodies.RoomReply,
                params=room,
            ),
            "delete": _op(
                "Delete a room (owner): its messages are redacted, its name held for a while",
                "204",
                params=room,
            ),
        },
        "/api/v1/rooms/{room}/members/{user}": {
            "put": _op("Join (self) or invite", "204", params=room_user),
            "delete": _op("Leave (self) or kick", "204", params=room_user),
        },
        "/api/v1/rooms/{room}/bans/{user}": {
            "put": _op("Ban", "204", params=room_user),
            "delete": _op("Unban", "204", params=room_user),
        },
        "/api/v1/rooms/{room}/bans": {
            "get": _op("Banned users", "200", result=bodies.UsersReply, params=room)
        },
        "/api/v1/rooms/{room}/moderators/{user}": {
            "put": _op("Promote a member to moderator (owner)", "204", params=room_user),
            "delete": _op("Demote a moderator (owner)", "204", params=room_user),
        },
        "/api/v1/rooms/{room}/messages": {
            "get": _op(
                "History page: messages in their current state, outside threads (thread="
                "ROOT: that thread's root and replies)",
                "200",
                result=bodies.HistoryReply,
                params=[
                    *room,
                    _query_int("before", 0, SEQ_MAX),
                    _query_int("after", 0, SEQ_MAX),
                    _query_int("limit", 1, HISTORY_MAX_LIMIT),
                    _query_int("thread", 0, SEQ_MAX),
                ],
            ),
        },
        "/api/v1/rooms/{room}/messages/{seq}/edits": {
            "get": _op(
                "A message's versions, oldest first: as sent, then each edit (404 once "
                "deleted, or for an update's seq)",
                "200",
                result=bodies.VersionsReply,
                params=[*room, _path_param("seq")],
            ),
        },
        "/api/v1/rooms/{room}/presence": {
            "get": _op("Who is online", "200", result=bodies.UsersReply, params=room)
        },
        "/healthz": {"get": _op("Liveness", "200", result=bodies.Status, auth=False, errors=())},
        "/readyz": {
            "get": _op(
                "Readiness (503 while starting, draining or with fan-out stalled)",
                "200",
                result=bodies.Status,
                auth=False,
                errors=(),
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
    # /readyz answers 503 with its status ("starting", "draining", or "stalled" with a
    # reason), not an error body.
    paths["/readyz"]["get"]["responses"]["503"] = {
        "description": "starting, draining, or stalled (fan-out delivers nothing)",
        "content": _json(bodies.Status),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hubbub",
            "version": __version__,
            "description": "Chat rooms over HTTP and WebSocket (/ws); see docs/protocol.md",
        },
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
            "responses": {
                "Error": {
                    "description": "an error: {error: {code, message}}",
                    "content": _json(bodies.ErrorReply),
                }
            },
        },
    }
