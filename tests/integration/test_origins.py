"""Which web pages may use a node: WebSocket upgrades by Origin, CORS on /api/v1, headers.

One node with `--allowed-origins https://app.example`: an upgrade from another site gets
403 before the upgrade (cross-site WebSocket hijacking), the node's own origin, the listed
one and clients without Origin (SDK, bots) get a socket; CORS preflights are answered for
the listed origin only; API answers carry nosniff, no-referrer and no-store.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.api import Api, check_error
from support.server import ServerProcess
from support.ws import WS

LISTED = "https://app.example"
FOREIGN = "https://evil.example"
HUBBUB = [sys.executable, "-m", "hubbub"]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(
        tmp_path_factory.mktemp("origins"), args=["--allowed-origins", f"{LISTED}, http://x.test"]
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def upgrade_headers(origin: str | None) -> dict[str, str]:
    """The headers of a browser's WebSocket upgrade request, from `origin`."""
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }
    if origin is not None:
        headers["Origin"] = origin
    return headers


async def test_an_upgrade_from_another_site_is_refused_with_403_before_the_upgrade(
    node: ServerProcess, http: aiohttp.ClientSession
) -> None:
    for origin in (FOREIGN, "null", f"http://127.0.0.1:{node.port + 1}"):
        async with http.get(
            node.ws_url.replace("ws:", "http:"), headers=upgrade_headers(origin)
        ) as r:
            assert r.status == 403
            assert r.headers["Content-Type"].startswith("application/json")
            body = await r.json()
        error = check_error((r.status, body), 403, "forbidden")
        assert error["message"] == f"origin {origin} is not allowed"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(node.ws_url, origin=FOREIGN)
    assert refused.value.status == 403


async def test_own_listed_and_absent_origins_get_a_websocket(
    node: ServerProcess, http: aiohttp.ClientSession
) -> None:
    _, token = await Api(http, node.url).user()
    # aiohttp sends no Origin unless told: that is the SDK's and the bots' case.
    for origin in (None, node.url, LISTED, "http://x.test:80"):
        ws = WS(await http.ws_connect(node.ws_url, origin=origin))
        try:
            welcome = await ws.hello(token)
            assert welcome["type"] == "welcome"
        finally:
            await ws.close()


async def preflight(
    http: aiohttp.ClientSession, node: ServerProcess, origin: str
) -> tuple[int, Any, Any]:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with http.options(node.url + "/api/v1/rooms", headers=headers) as r:
        body = await r.json() if r.content_type == "application/json" else None
        return r.status, r.headers, body


async def test_cors_preflight_is_answered_for_listed_origins_only(
    node: ServerProcess, http: aiohttp.ClientSession
) -> None:
    status, headers, _ = await preflight(http, node, LISTED)
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == LISTED
    assert "Origin" in headers.getall("Vary")
    assert set(headers["Access-Control-Allow-Methods"].split(", ")) >= {"GET", "POST", "PUT"}
    assert set(headers["Access-Control-Allow-Headers"].split(", ")) == {
        "Authorization",
        "Content-Type",
    }
    assert int(headers["Access-Control-Max-Age"]) > 0
    assert "Access-Control-Allow-Credentials" not in headers  # bearer tokens, no cookies

    status, headers, body = await preflight(http, node, FOREIGN)
    check_error((status, body), 403, "forbidden")
    assert "Access-Control-Allow-Origin" not in headers


async def test_api_answers_carry_cors_for_listed_origins_and_security_headers(
    node: ServerProcess, http: aiohttp.ClientSession
) -> None:
    api = Api(http, node.url)
    name, _ = await api.user()
    login = {"username": name, "password": "correct horse"}
    for origin, allowed in ((LISTED, True), (FOREIGN, False), (None, False)):
        headers = {"Origin": origin} if origin else {}
        async with http.post(node.url + "/api/v1/login", json=login, headers=headers) as r:
            assert r.status == 200
            assert "token" in await r.json()
            assert r.headers.get("Access-Control-Allow-Origin") == (origin if allowed else None)
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["Referrer-Policy"] == "no-referrer"
            assert r.headers["Cache-Control"] == "no-store"
            assert "Origin" in r.headers.getall("Vary")
    # Errors too: a 401 from a listed origin is readable by its page.
    async with http.get(node.url + "/api/v1/me", headers={"Origin": LISTED}) as r:
        assert r.status == 401
        assert r.headers["Access-Control-Allow-Origin"] == LISTED
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    # Health answers are JSON too, but carry no tokens: nosniff without no-store.
    async with http.get(node.url + "/healthz") as r:
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "Access-Control-Allow-Origin" not in r.headers


def test_a_bad_allowed_origin_stops_the_node_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [*HUBBUB, "serve", "--data", str(tmp_path), "--allowed-origins", "https://*.example"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--allowed-origins: 'https://*.example' is not an origin" in result.stderr
