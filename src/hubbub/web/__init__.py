"""The browser app: static files served by every node at `/` (no build step)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"

# The app has no inline script or style and builds the DOM without HTML strings, so the
# policy can forbid everything else: an injected <script> or onerror= never runs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Revalidate each load (a 304 when unchanged): a node upgraded in place serves its new
    # app at once, and the ES modules of one version are never mixed with another's.
    "Cache-Control": "no-cache",
}


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


def _is_web_path(path: str) -> bool:
    return path == "/" or path.startswith("/static/")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Put the policy on the app's own responses (the API answers JSON, not documents)."""
    if _is_web_path(request.path):
        response.headers.update(SECURITY_HEADERS)


def add_web_routes(app: web.Application) -> None:
    app.router.add_get("/", _index)
    app.router.add_static("/static/", STATIC)
    app.on_response_prepare.append(_security_headers)
