"""Which web pages may use a node: the origin rule, CORS for /api/v1 and the API's headers.

Browsers attach cookies to nothing here (tokens are bearer tokens a page must hold), but
a WebSocket is not bound by the same-origin policy: any page could open one to a node and
speak for a user whose token it got. So an upgrade carrying an `Origin` header is accepted
only from the node's own origin or one listed in `--allowed-origins` (cross-site WebSocket
hijacking defence). Clients without an `Origin` header (the SDK, bots, `hubbub chat`) are
not browsers and pass. The same rule decides which pages get CORS answers from /api/v1.

Same origin, kept simple so it also holds behind a TLS-terminating proxy: the Origin's host
and port equal those of the request's `Host` header (a port left out is the default of the
Origin's scheme). The scheme itself is not compared: behind HAProxy the node sees plain
HTTP for a page loaded over HTTPS.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from hubbub.protocol.errors import Forbidden

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DEFAULT_PORTS = {"http": 80, "https": 443}
# A DNS name or an IPv4 address, or an IPv6 one (urlsplit drops its brackets): no wildcards.
_HOST = re.compile(r"[a-z0-9.-]+|[0-9a-f:.]+")
API_PREFIX = "/api/v1/"
# What a page may send across origins: every method of the API, and the two headers it needs.
CORS_METHODS = "GET, POST, PUT, DELETE"
CORS_HEADERS = "Authorization, Content-Type"
CORS_MAX_AGE = "3600"  # seconds a browser may reuse a preflight (Chromium caps it at 2 h)
# A 429 says when to retry: let pages read it.
CORS_EXPOSE = "Retry-After"
# On every answer that is not the web app's (which sets its own, stricter, set).
JSON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True)
class Origin:
    """A web origin reduced to what the rule compares: scheme, lower-case host, port."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        default = DEFAULT_PORTS[self.scheme] == self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + ("" if default else f":{self.port}")


def parse_origin(text: str) -> Origin | None:
    """`scheme://host[:port]` with http or https and nothing after it; None otherwise
    (including the opaque `null` of sandboxed frames and file: pages)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        return None
    host = parts.hostname.lower()
    if not _HOST.fullmatch(host):
        return None
    return Origin(scheme, host, port or DEFAULT_PORTS[scheme])


def _host_and_port(host_header: str) -> tuple[str, int | None] | None:
    """The host (lower case, IPv6 without brackets) and the port (None: left out) of a
    `Host` header; None when it is not one."""
    try:
        parts = urlsplit("//" + host_header.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.path or parts.username is not None:
        return None
    return parts.hostname.lower(), port


@dataclass(frozen=True)
class OriginPolicy:
    """The origins allowed besides a node's own (`--allowed-origins`); `any` for `*`."""

    listed: frozenset[Origin] = frozenset()
    any: bool = False

    @classmethod
    def parse(cls, text: str) -> OriginPolicy:
        """From `--allowed-origins`: comma-separated origins, or `*`. A ValueError names an
        entry that is not an origin (a path, a wildcard host, a missing scheme...)."""
        listed: set[Origin] = set()
        wildcard = False
        for entry in (item.strip() for item in text.split(",")):
            if not entry:
                continue
            if entry == "*":
                wildcard = True
                continue
            origin = parse_origin(entry)
            if origin is None:
                raise ValueError(
                    f"--allowed-origins: {entry!r} is not an origin: give "
                    "scheme://host[:port] with http or https and no path, or * for any"
                )
            listed.add(origin)
        return cls(frozenset(listed), wildcard)

    def allows(self, origin: str | None, host_header: str | None) -> bool:
        """Whether a request with this `Origin` header, sent to this `Host`, may go on.

        No Origin: not a browser, allowed. Otherwise `*`, the node's own origin (see the
        module's docstring), or a listed one; an Origin that does not parse only with `*`.
        """
        if origin is None or self.any:
            return True
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        return parsed in self.listed or same_origin(parsed, host_header)


def same_origin(origin: Origin, host_header: str | None) -> bool:
    """Whether `origin` names the host and port the request was sent to (its Host)."""
    if host_header is None:
        return False
    target = _host_and_port(host_header)
    if target is None:
        return False
    host, port = target
    return origin.host == host and origin.port == (port or DEFAULT_PORTS[origin.scheme])


def refusal(origin: str) -> Forbidden:
    """The error of a request from an origin that is not allowed (403 forbidden)."""
    shown = origin if len(origin) <= 200 else origin[:200] + "..."
    return Forbidden(f"origin {shown} is not allowed")


# --- the HTTP side -------------------------------------------------------------------------


def _is_preflight(request: web.Request) -> bool:
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


def cors_middleware(policy: OriginPolicy) -> Middleware:
    """Answers CORS preflights of /api/v1 (204 for allowed origins, 403 for others, so the
    browser blocks the call); everything else goes on to its route."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not (request.path.startswith(API_PREFIX) and _is_preflight(request)):
            return await handler(request)
        origin = request.headers["Origin"]
        if not policy.allows(origin, request.headers.get("Host")):
            raise refusal(origin)
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": CORS_METHODS,
                "Access-Control-Allow-Headers": CORS_HEADERS,
                "Access-Control-Max-Age": CORS_MAX_AGE,
            },
        )

    return middleware


def response_headers(policy: OriginPolicy) -> Callable[[web.Request, web.StreamResponse], Any]:
    """An `on_response_prepare` hook: CORS and security headers on the API's answers.

    /api/v1 answers carry tokens and private data: `no-store` keeps them out of every cache,
    and `Vary: Origin` keeps a shared cache from serving one origin's CORS answer to
    another. The web app's pages (/, /static/) keep the headers hubbub.web gives them.
    """

    async def hook(request: web.Request, response: web.StreamResponse) -> None:
        if response.status == 101:
            return
        headers = response.headers
        for name, value in JSON_HEADERS.items():
            headers.setdefault(name, value)
        if not request.path.startswith(API_PREFIX):
            return
        headers["Cache-Control"] = "no-store"
        headers.add("Vary", "Origin")
        origin = request.headers.get("Origin")
        if origin is not None and policy.allows(origin, request.headers.get("Host")):
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Expose-Headers"] = CORS_EXPOSE

    return hook
