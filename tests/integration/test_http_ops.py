"""HTTP API, operations and routing: /healthz, /readyz, /metrics, /api/openapi.json, unknown
routes (404) and wrong methods (405), all answered with the spec's error body."""

from __future__ import annotations

import re
from typing import Any

import pytest
from openapi_spec_validator import validate
from support.api import ERROR_CODES

# Every /api/v1 route of the spec's HTTP table (plus the docs' moderators and bans list).
API_ROUTES = {
    ("post", "/api/v1/users"),
    ("post", "/api/v1/login"),
    ("post", "/api/v1/logout"),
    ("get", "/api/v1/me"),
    ("post", "/api/v1/rooms"),
    ("get", "/api/v1/rooms"),
    ("get", "/api/v1/rooms/{}"),
    ("put", "/api/v1/rooms/{}/members/{}"),
    ("delete", "/api/v1/rooms/{}/members/{}"),
    ("put", "/api/v1/rooms/{}/bans/{}"),
    ("delete", "/api/v1/rooms/{}/bans/{}"),
    ("get", "/api/v1/rooms/{}/bans"),
    ("put", "/api/v1/rooms/{}/moderators/{}"),
    ("delete", "/api/v1/rooms/{}/moderators/{}"),
    ("get", "/api/v1/rooms/{}/messages"),
    ("get", "/api/v1/rooms/{}/presence"),
}


async def fetch(http: Any, url: str, method: str = "GET", **kw: Any) -> tuple[int, Any, Any]:
    """(status, headers, body: parsed JSON or text)."""
    async with http.request(method, url, **kw) as r:
        raw = await r.read()
        try:
            body: Any = await r.json(content_type=None) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        return r.status, r.headers, body


# --- health, readiness, metrics ------------------------------------------------------------------


async def test_healthz_answers_200_without_authentication(http, server):
    status, _, _ = await fetch(http, server.url + "/healthz")
    assert status == 200


async def test_readyz_answers_200_on_a_running_node(http, server):
    status, _, _ = await fetch(http, server.url + "/readyz")
    assert status == 200


async def test_metrics_answers_prometheus_text_with_hubbub_metrics(http, server, api):
    await api.user()  # some activity first
    async with http.get(server.url + "/metrics") as r:
        assert r.status == 200
        assert r.content_type in ("text/plain", "application/openmetrics-text"), r.content_type
        text = await r.text()
    names = set(re.findall(r"^# TYPE (hubbub_[a-zA-Z0-9_:]*) (\w+)$", text, re.M))
    assert names, f"no `# TYPE hubbub_...` line in /metrics:\n{text[:2000]}"
    sample = re.compile(r"^hubbub_[a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eEInfNa]+( \d+)?$", re.M)
    assert sample.search(text), "no hubbub_ sample line in Prometheus text format"
    for line in text.splitlines():
        assert not line or line.startswith("#") or re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*", line), (
            line
        )


# --- OpenAPI -------------------------------------------------------------------------------------


@pytest.fixture
async def openapi(http: Any, server: Any) -> dict[str, Any]:
    status, headers, doc = await fetch(http, server.url + "/api/openapi.json")
    assert status == 200, doc
    assert headers["Content-Type"].startswith("application/json")
    assert isinstance(doc, dict), doc
    return doc


async def test_openapi_document_is_a_valid_openapi_3_document(openapi):
    assert str(openapi.get("openapi", "")).startswith("3."), openapi.get("openapi")
    validate(openapi)


async def test_openapi_document_lists_every_api_v1_route(openapi):
    listed = set()
    for path, item in openapi["paths"].items():
        template = re.sub(r"\{[^}]+\}", "{}", path)
        for method in item:
            listed.add((method.lower(), template))
    missing = sorted(API_ROUTES - listed)
    assert not missing, f"routes missing from /api/openapi.json: {missing}"


# --- unknown routes and wrong methods ------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/nothing-here", "/api/v2/rooms", "/no/such/page", "/api/v1/rooms/x/y/z/w"]
)
async def test_unknown_route_answers_404_with_the_json_error_body(
    http, server, new_user, path, assert_error
):
    me = await new_user()
    for headers in ({}, {"Authorization": f"Bearer {me.token}"}):
        status, resp_headers, body = await fetch(http, server.url + path, headers=headers)
        assert resp_headers.get("Content-Type", "").startswith("application/json"), (
            path,
            resp_headers,
        )
        assert_error((status, body), 404, "not_found")


WRONG_METHODS = [
    ("GET", "/api/v1/login"),
    ("GET", "/api/v1/users"),
    ("PUT", "/api/v1/me"),
    ("PATCH", "/api/v1/rooms"),
    ("POST", "/api/v1/rooms/{room}/messages"),
    ("POST", "/api/v1/rooms/{room}/members/{user}"),
    ("GET", "/api/v1/rooms/{room}/moderators/{user}"),
]


async def call_with_wrong_method(
    http: Any, server: Any, api: Any, new_user: Any, method: str, path: str
) -> tuple[int, Any, Any]:
    me = await new_user()
    room = await api.room(me.token)
    url = server.url + path.format(room=room, user=me.name)
    return await fetch(http, url, method, headers={"Authorization": f"Bearer {me.token}"})


@pytest.mark.parametrize(("method", "path"), WRONG_METHODS)
async def test_wrong_method_answers_405_with_the_json_error_body(
    http, server, api, new_user, method, path
):
    status, _, body = await call_with_wrong_method(http, server, api, new_user, method, path)
    assert status == 405, (method, path, status, body)
    # Spec: every error carries {"error": {"code", "message"}} with a code from the table.
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"]["code"] in ERROR_CODES, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body


@pytest.mark.parametrize(("method", "path"), WRONG_METHODS)
async def test_wrong_method_answer_lists_the_allowed_methods(
    http, server, api, new_user, method, path
):
    status, headers, _ = await call_with_wrong_method(http, server, api, new_user, method, path)
    assert status == 405
    # RFC 9110 section 15.5.6: the origin server MUST send an Allow header with a 405.
    assert "Allow" in headers, f"no Allow header in the 405 answer to {method} {path}"
    allowed = {m.strip().upper() for m in headers["Allow"].split(",")}
    assert allowed, headers["Allow"]
    assert method not in allowed


async def test_request_body_over_64_kib_is_413_too_large_and_creates_nothing(
    http, server, api, assert_error
):
    name = "big" + "x" * 20
    payload = b'{"username": "' + name.encode() + b'", "password": "' + b"p" * 70_000 + b'"}'
    status, headers, body = await fetch(http, server.url + "/api/v1/users", "POST", data=payload)
    assert headers.get("Content-Type", "").startswith("application/json"), headers
    assert_error((status, body), 413, "too_large")
    login = await api.call("POST", "/api/v1/login", json={"username": name, "password": "x" * 8})
    assert login[0] == 401
