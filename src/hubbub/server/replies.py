"""What every handler reads of a request and how it answers: the client, JSON, errors."""

from __future__ import annotations

import math
from typing import Any

import orjson
from aiohttp import web

from hubbub.core.audit import Client
from hubbub.protocol.bodies import error_reply
from hubbub.protocol.errors import ProtocolError, RateLimited
from hubbub.server.edge.clientaddr import TrustedProxies

PROXIES: web.AppKey[TrustedProxies] = web.AppKey("proxies", TrustedProxies)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_response(error: ProtocolError, status: int | None = None) -> web.Response:
    response = json_response(error_reply(error), status or error.status)
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return response


def client_of(request: web.Request) -> Client:
    """The request's client address (see `clientaddr`) and user agent, both length-capped."""
    forwarded = request.headers.getall("X-Forwarded-For", [])
    address = request.app[PROXIES].client(request.remote, forwarded)
    return Client(address[:64], request.headers.get("User-Agent", "")[:256])
