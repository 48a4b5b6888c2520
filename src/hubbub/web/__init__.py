"""The browser app: static files served by every node at `/` (no build step)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


def add_web_routes(app: web.Application) -> None:
    app.router.add_get("/", _index)
    app.router.add_static("/static/", STATIC)
