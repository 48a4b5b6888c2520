"""HTTP routes: the REST API under /api/v1, health, readiness, metrics and OpenAPI."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hubbub import metrics
from hubbub.core.audit import Client
from hubbub.core.chat import Chat
from hubbub.core.limits import HttpLimits
from hubbub.protocol import bodies
from hubbub.protocol.bodies import Credentials, convert, json_object
from hubbub.protocol.errors import (
    BadRequest,
    Internal,
    NotFound,
    ProtocolError,
    TooLarge,
    Unauthorized,
)
from hubbub.protocol.frames import HISTORY_DEFAULT_LIMIT, SEQ_MAX
from hubbub.protocol.rules import HISTORY_MAX_LIMIT
from hubbub.server.openapi import openapi_document
from hubbub.server.replies import client_of, error_response, json_response

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CHAT: web.AppKey[Chat] = web.AppKey("chat", Chat)
DRAINING: web.AppKey[asyncio.Event] = web.AppKey("draining", asyncio.Event)
STARTED: web.AppKey[asyncio.Event] = web.AppKey("started", asyncio.Event)
LIMITS: web.AppKey[HttpLimits] = web.AppKey("limits", HttpLimits)
# The engine's `problem`: a sentence while this node cannot serve (fan-out stalled, the
# database out of reach).
PROBLEM: web.AppKey[Callable[[], str | None]] = web.AppKey("problem")


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except ProtocolError as exc:
        response = error_response(exc)
    except web.HTTPMethodNotAllowed as exc:
        response = error_response(BadRequest(f"{request.method} is not allowed here"), exc.status)
        response.headers["Allow"] = exc.headers.get("Allow", "")
    except web.HTTPNotFound:
        response = error_response(NotFound(f"no route {request.path}"))
    except web.HTTPRequestEntityTooLarge as exc:
        response = error_response(TooLarge("the request body is over 64 KiB"), exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(BadRequest(exc.reason), exc.status)
    except Exception:
        incident = secrets.token_hex(6)
        log.exception("internal error", extra={"incident": incident, "path": request.path})
        response = error_response(Internal(f"internal error {incident}; it has been logged"))
    metrics.HTTP_REQUESTS.labels(str(response.status)).inc()
    return response


async def user_of(request: web.Request) -> tuple[str, str]:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <token>")
    return await request.app[CHAT].authenticate(token.strip())


def query_bool(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise BadRequest(f"{name} must be true or false")
    return raw in ("true", "1")


_INTEGER = re.compile(r"-?[0-9]{1,20}")


def query_int(request: web.Request, name: str, low: int, high: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    # Plain decimal digits only: int() would also take " 7", "+3", "1_0" and other scripts'
    # digits, which no client means.
    if not _INTEGER.fullmatch(raw):
        raise BadRequest(f"{name} must be an integer")
    value = int(raw)
    if value < low or (high is not None and value > high):
        bound = f"{low} to {high}" if high is not None else f"at least {low}"
        raise BadRequest(f"{name} must be {bound}")
    return value


routes = web.RouteTableDef()


@routes.post("/api/v1/users")
async def register(request: web.Request) -> web.Response:
    data = json_object(await request.read())
    user = await request.app[CHAT].register(
        data.get("username"), data.get("password"), client_of(request)
    )
    return json_response(bodies.user_reply(user), 201)


@routes.post("/api/v1/login")
async def login(request: web.Request) -> web.Response:
    creds = convert(json_object(await request.read()), Credentials)
    token, user = await request.app[CHAT].login(creds.username, creds.password, client_of(request))
    return json_response(bodies.login_reply(token, user))


@routes.post("/api/v1/logout")
async def logout(request: web.Request) -> web.Response:
    user, hashed = await user_of(request)
    await request.app[CHAT].logout(hashed, user=user, client=client_of(request))
    return web.Response(status=204)


@routes.get("/api/v1/me")
async def me(request: web.Request) -> web.Response:
    user, _ = await user_of(request)
    return json_response(await request.app[CHAT].me(user))


@routes.delete("/api/v1/me")
async def delete_account(request: web.Request) -> web.Response:
    user, _ = await user_of(request)
    data = json_object(await request.read())
    await request.app[CHAT].delete_account(user, data, client_of(request))
    return web.Response(status=204)


@routes.get("/api/v1/me/sessions")
async def sessions(request: web.Request) -> web.Response:
    user, hashed = await user_of(request)
    return json_response(bodies.sessions_reply(await request.app[CHAT].sessions(user, hashed)))


@routes.delete("/api/v1/me/sessions/{id}")
async def revoke_session(request: web.Request) -> web.Response:
    user, _ = await user_of(request)
    await request.app[CHAT].revoke_session(user, request.match_info["id"], client_of(request))
    return web.Response(status=204)


@routes.delete("/api/v1/me/sessions")
async def revoke_sessions(request: web.Request) -> web.Response:
    user, hashed = await user_of(request)
    keep = hashed if query_bool(request, "keep_current") else None
    await request.app[CHAT].revoke_sessions(user, keep, client_of(request))
    return web.Response(status=204)


@routes.post("/api/v1/rooms")
async def create_room(request: web.Request) -> web.Response:
    user, _ = await user_of(request)
    data = json_object(await request.read())
    limits = request.app[LIMITS]
    # The quota comes before the fields: an account over it hears rate_limited, whatever it sent.
    await limits.check_room_quota(user)
    # The rule (the `NewRoom` body) is applied by the chat, as for registration.
    room = await request.app[CHAT].create_room(
        user, data.get("name"), data.get("topic"), data.get("private")
    )
    await limits.room_created(user)
    return json_response(bodies.room_reply(room), 201)


@routes.get("/api/v1/rooms")
async def list_rooms(request: web.Request) -> web.Response:
    user, _ = await user_of(request)
    archived = query_bool(request, "archived")
    rooms = await request.app[CHAT].list_rooms(user, archived)
    return json_response(bodies.rooms_reply(rooms))


@routes.get("/api/v1/rooms/{room}")
async def get_room(request: web.Request) -> web.Response:
    user, _ = await user_of(request)
    room = await request.app[CHAT].get_room(user, request.match_info["room"])
    return json_response(bodies.room_reply(room))


@routes.patch("/api/v1/rooms/{room}")
async def change_room(request: web.Request) -> web.Response:
    user, _ = await user_of(request)
    data = json_object(await request.read())
    room = await request.app[CHAT].change_room(
        user, request.match_info["room"], data, client_of(request)
    )
    return json_response(bodies.room_reply(room))


@routes.delete("/api/v1/rooms/{room}")
async def delete_room(request: web.Request) -> web.Response:
    user, _ = await user_of(request)
    await request.app[CHAT].delete_room(user, request.match_info["room"], client_of(request))
    return web.Response(status=204)


def _member_route(action: Callable[[Chat, str, str, str, Client], Awaitable[None]]) -> Handler:
    """A `PUT|DELETE /api/v1/rooms/{room}/<kind>/{user}` call answering 204 (the rule audits
    it)."""

    async def handler(request: web.Request) -> web.Response:
        user, _ = await user_of(request)
        room, target = request.match_info["room"], request.match_info["user"]
        await action(request.app[CHAT], user, room, target, client_of(request))
        return web.Response(status=204)

    return handler


MEMBER_ROUTES: list[tuple[str, str, Handler]] = [
    ("PUT", "members", _member_route(Chat.add_member)),
    ("DELETE", "members", _member_route(Chat.remove_member)),
    ("PUT", "bans", _member_route(Chat.ban)),
    ("DELETE", "bans", _member_route(Chat.unban)),
    ("PUT", "moderators", _member_route(Chat.promote)),
    ("DELETE", "moderators", _member_route(Chat.demote)),
]


@routes.get("/api/v1/rooms/{room}/bans")
async def list_bans(request: web.Request) -> web.Response:
    user, _ = await user_of(request)
    names = await request.app[CHAT].bans(user, request.match_info["room"])
    return json_response(bodies.users_reply(names))


@routes.get("/api/v1/rooms/{room}/messages")
async def history(request: web.Request) -> web.Response:
    user, _ = await user_of(request)
    request.app[LIMITS].check_history(user)
    before = query_int(request, "before", 0, SEQ_MAX)
    after = query_int(request, "after", 0, SEQ_MAX)
    limit = query_int(request, "limit", 1, HISTORY_MAX_LIMIT)
    thread = query_int(request, "thread", 0, SEQ_MAX)
    if limit is None:
        limit = HISTORY_DEFAULT_LIMIT
    messages, more = await request.app[CHAT].history(
        user, request.match_info["room"], before, after, limit, thread
    )
    return json_response(bodies.history_reply([m.view(user) for m in messages], more))


@routes.get("/api/v1/rooms/{room}/messages/{seq}/edits")
async def versions(request: web.Request) -> web.Response:
    user, _ = await user_of(request)
    request.app[LIMITS].check_history(user)
    raw = request.match_info["seq"]
    if not _INTEGER.fullmatch(raw) or not 0 <= int(raw) <= SEQ_MAX:
        raise NotFound(f"no message {raw[:32]!r}: a message is named by its seq, a whole number")
    found = await request.app[CHAT].versions(user, request.match_info["room"], int(raw))
    return json_response(bodies.versions_reply([m.version() for m in found]))


@routes.get("/api/v1/rooms/{room}/presence")
async def presence(request: web.Request) -> web.Response:
    user, _ = await user_of(request)
    online = await request.app[CHAT].online(user, request.match_info["room"])
    return json_response(bodies.users_reply(online))


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response(bodies.status_reply("ok"))


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    if request.app[DRAINING].is_set():
        return json_response(bodies.status_reply("draining"), 503)
    if not request.app[STARTED].is_set():
        return json_response(bodies.status_reply("starting"), 503)
    problem = request.app[PROBLEM]()
    if problem is not None:
        # Not in rotation while its rooms may be silent or its calls refused; it heals
        # itself (engine.redis.canary, engine.postgres.watch).
        return json_response(bodies.status_reply("stalled", problem), 503)
    return json_response(bodies.status_reply("ready"))


@routes.get("/metrics")
async def metrics_endpoint(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/api/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


def add_routes(app: web.Application) -> None:
    app.add_routes(routes)
    for method, kind, handler in MEMBER_ROUTES:
        app.router.add_route(method, f"/api/v1/rooms/{{room}}/{kind}/{{user}}", handler)
