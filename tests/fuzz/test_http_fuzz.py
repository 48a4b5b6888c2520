"""Hostile HTTP input against one live server: generated requests never break it.

Hypothesis generates calls to every route of the API (and to no route) with any method,
odd path segments (unicode, percent escapes, dots, NUL), history queries with any
`before`/`after`/`limit`, any Authorization header, and bodies that are random JSON,
ill-typed or out-of-range fields of the real bodies, bytes that are not JSON or not UTF-8,
or over the 64 KiB limit. Properties, for every answer: never a 5xx; a 4xx is the spec's
error body (exactly `{"error": {"code", "message"}}`) with a spec code matching the status
(405 is a `bad_request` with an Allow header) and a message that reveals nothing of the
inside. After each test the `guard` fixture (conftest.py) checks the server is healthy,
the canary can send, the messages acked before the fuzz are unchanged and nothing was
logged at level error.

Runs are derandomized with the example database off: the same examples every run.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support.fuzzutil import World, check_http_answer

SETTINGS = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one HTTP session serves all the examples
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
MAX_BODY = 64 * 1024

# --- strategies ----------------------------------------------------------------------------------

odd_text = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(min_codepoint=0x80), max_size=20),
    st.sampled_from(["", ".", "..", "%", "%00", "a/b", "A" * 33, "r" * 65, "-x", "_", "me"]),
    st.from_regex(r"\A[A-Za-z0-9_.-]{1,32}\Z"),  # valid usernames
    st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,63}\Z"),  # valid room names
)
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    odd_text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


def body_of(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """A body with the route's fields, each maybe missing, ill-typed or odd."""
    return st.fixed_dictionaries({}, optional={k: v | json_value for k, v in fields.items()})


credentials = body_of(
    {
        "username": st.from_regex(r"\A[A-Za-z0-9_.-]{1,32}\Z"),
        "password": st.text(min_size=8, max_size=20) | st.integers(0, 1100).map("p".__mul__),
    }
)
room_body = body_of(
    {
        "name": st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,63}\Z"),
        "topic": st.text(max_size=20) | st.integers(990, 1010).map("t".__mul__),
        "private": st.booleans(),
    }
)
raw_bodies = st.one_of(
    st.binary(max_size=64),  # not JSON, maybe not UTF-8
    st.text(max_size=64).map(str.encode),
    st.integers(MAX_BODY - 20, MAX_BODY + 20).map(
        lambda n: json.dumps({"username": "x" * n, "password": "y"}).encode()
    ),
)
seq_text = st.one_of(
    st.integers(-3, 300).map(str),
    st.sampled_from(["", "1.5", "1e3", "0x10", " 7", "+3", "-0", "٣", str(2**63), str(2**63 - 1)]),
    st.text(max_size=8),
)
query = st.lists(
    st.tuples(st.sampled_from(["before", "after", "limit", "x"]), seq_text), max_size=4
)
ROUTES = [
    ("POST", "/api/v1/users", "credentials"),
    ("POST", "/api/v1/login", "credentials"),
    ("POST", "/api/v1/logout", None),
    ("GET", "/api/v1/me", None),
    ("POST", "/api/v1/rooms", "room"),
    ("GET", "/api/v1/rooms", None),
    ("GET", "/api/v1/rooms/{room}", None),
    ("PUT", "/api/v1/rooms/{room}/members/{user}", None),
    ("DELETE", "/api/v1/rooms/{room}/members/{user}", None),
    ("PUT", "/api/v1/rooms/{room}/bans/{user}", None),
    ("DELETE", "/api/v1/rooms/{room}/bans/{user}", None),
    ("GET", "/api/v1/rooms/{room}/bans", None),
    ("PUT", "/api/v1/rooms/{room}/moderators/{user}", None),
    ("DELETE", "/api/v1/rooms/{room}/moderators/{user}", None),
    ("GET", "/api/v1/rooms/{room}/messages", None),
    ("GET", "/api/v1/rooms/{room}/presence", None),
    ("GET", "/api/v1/{x}", None),
    ("GET", "/{x}/{x}", None),
    ("GET", "/healthz", None),
    ("GET", "/readyz", None),
    ("GET", "/api/openapi.json", None),
]


@dataclass(frozen=True)
class Call:
    method: str
    template: str
    room: str  # "public" | "private" | "banned" | a segment
    user: str  # "owner" | "fuzzer" | "canary" | a segment
    query: list[tuple[str, str]]
    auth: str  # "fuzzer" | "none" | "bad" | a header value
    body: Any  # JSON, raw bytes, or None


@st.composite
def calls(draw: st.DrawFn) -> Call:
    method, template, kind = draw(st.sampled_from(ROUTES))
    if draw(st.integers(0, 9)) == 0:  # now and then the wrong method
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    bodies = {"credentials": credentials, "room": room_body}
    if kind is not None and draw(st.booleans()):
        body: Any = draw(bodies[kind])
    else:
        body = draw(st.one_of(st.none(), json_value, raw_bodies))
    auth = draw(
        st.one_of(
            st.just("fuzzer"),  # mostly a good token, so the calls get past authentication
            st.just("fuzzer"),
            st.just("fuzzer"),
            st.sampled_from(["none", "bad", "Bearer", "Bearer ", "Basic abc", "bearer  x"]),
            # Printable Latin-1: HTTP clients refuse to send control characters in a
            # header (the raw-socket tests below send those).
            st.text(
                st.characters(min_codepoint=32, max_codepoint=255, exclude_categories=("Cc",)),
                max_size=300,
            ),
        )
    )
    if template == "/api/v1/logout" and auth == "fuzzer":
        auth = "bad"  # the fuzz must not log itself out
    return Call(
        method,
        template,
        draw(st.sampled_from(["public", "private", "banned"]) | odd_text),
        draw(st.sampled_from(["owner", "fuzzer", "canary"]) | odd_text),
        draw(query) if "messages" in template or draw(st.integers(0, 5)) == 0 else [],
        auth,
        body,
    )


# --- the test ------------------------------------------------------------------------------------


def url_of(call: Call, world: World) -> yarl.URL:
    rooms = {"public": world.public, "private": world.private, "banned": world.banned}
    room = rooms.get(call.room, call.room)
    user = world.names.get(call.user, call.user)
    path = (
        call.template.replace("{room}", quote(room, safe=""))
        .replace("{user}", quote(user, safe=""))
        .replace("{x}", quote(call.room, safe=""))
    )
    qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in call.query)
    return yarl.URL(world.base + path + (f"?{qs}" if qs else ""), encoded=True)


def headers_of(call: Call, world: World) -> dict[str, str]:
    if call.auth == "none":
        return {}
    if call.auth == "fuzzer":
        return {"Authorization": f"Bearer {world.tokens['fuzzer']}"}
    if call.auth == "bad":
        return {"Authorization": "Bearer not-a-token"}
    return {"Authorization": call.auth}


@SETTINGS
@given(call=calls())
async def test_requests_never_break_the_server(
    http: aiohttp.ClientSession, world: World, call: Call
) -> None:
    data = call.body if isinstance(call.body, bytes) else None
    payload = None if data is not None or call.body is None else json.dumps(call.body).encode()
    headers = headers_of(call, world)
    if payload is not None:
        headers["Content-Type"] = "application/json"
    async with http.request(
        call.method, url_of(call, world), data=data or payload, headers=headers
    ) as r:
        raw = await r.read()
        where = f"{call.method} {r.url}"
        event(f"{call.method} {call.template} -> {r.status}")
        check_http_answer(r.status, r.headers, raw, where)


@settings(SETTINGS, max_examples=150)
@given(params=query, room=st.sampled_from(["public", "private", "banned"]))
async def test_history_pages_hold_to_their_bounds_whatever_the_query(
    http: aiohttp.ClientSession, world: World, params: list[tuple[str, str]], room: str
) -> None:
    """A 200 page is in ascending `seq`, inside the bounds and no longer than the limit."""
    call = Call("GET", "/api/v1/rooms/{room}/messages", room, "fuzzer", params, "fuzzer", None)
    async with http.get(url_of(call, world), headers=headers_of(call, world)) as r:
        raw = await r.read()
        check_http_answer(r.status, r.headers, raw, f"GET {r.url}")
        event(f"history {room} -> {r.status}")
        if r.status != 200:
            return
    page = json.loads(raw)
    assert set(page) == {"messages", "more"} and isinstance(page["more"], bool), page
    seqs = [m["seq"] for m in page["messages"]]
    assert seqs == sorted(set(seqs)), seqs
    first = {k: v for k, v in reversed(params)}  # the server reads the first of repeated keys
    limit = int(first.get("limit", 50))
    assert len(seqs) <= limit, (limit, seqs)
    if "before" in first:
        assert all(seq < int(first["before"]) for seq in seqs), (first, seqs)
    if "after" in first:
        assert all(seq > int(first["after"]) for seq in seqs), (first, seqs)


# --- raw requests: bytes no HTTP client library would send --------------------------------------


def percent_encoded(data: bytes) -> str:
    return "".join(f"%{b:02X}" for b in data)


segment = st.one_of(
    st.binary(max_size=12).map(percent_encoded),  # any bytes, not UTF-8 included
    st.sampled_from(["%ED%A0%80", "%C0%AE", "%2e%2e", "%00", "%", "%zz", "a%2Fb", ".."]),
    odd_text.map(lambda text: quote(text, safe="")),
)
header_value = st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)


@dataclass(frozen=True)
class Raw:
    method: bytes
    path: str  # with {room}, {user} and {x} filled by `segment`s
    authorization: bytes | None  # None: the fuzzer's token
    body: bytes


@st.composite
def raw_requests(draw: st.DrawFn) -> Raw:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"]))
    path = draw(st.sampled_from(ROUTES))[1]
    for slot in ("{room}", "{user}", "{x}"):
        while slot in path:
            path = path.replace(slot, draw(segment), 1)
    if draw(st.booleans()):
        path += "?" + "&".join(
            f"{k}={draw(segment)}"
            for k in draw(st.lists(st.sampled_from(["before", "after", "limit"]), max_size=3))
        )
    auth = draw(st.one_of(st.none(), header_value.map(b"Bearer ".__add__), header_value))
    return Raw(method, path, auth, draw(st.binary(max_size=80)))


async def exchange(world: World, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer (the server closes: Connection: close)."""
    host, port = world.base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10.0)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().title()] = value.strip()
    return status, headers, body


@settings(SETTINGS, max_examples=200)
@given(raw=raw_requests())
async def test_raw_requests_never_break_the_server(world: World, raw: Raw) -> None:
    """Any bytes in the path, the query, the Authorization header and the body.

    A request line aiohttp's parser refuses (a raw byte over 0x7f in the path) gets its
    plain-text 400 before the application sees it: that is allowed here, nothing else is.
    """
    auth = raw.authorization
    if auth is None:
        auth = f"Bearer {world.tokens['fuzzer']}".encode()
    request = b"".join(
        [
            raw.method + b" " + raw.path.encode() + b" HTTP/1.1\r\n",
            b"Host: fuzz\r\nConnection: close\r\n",
            b"Authorization: " + auth + b"\r\n",
            b"Content-Length: " + str(len(raw.body)).encode() + b"\r\n\r\n",
            raw.body,
        ]
    )
    status, headers, body = await exchange(world, request)
    event(f"raw {raw.method.decode()} -> {status}")
    if status == 400 and not headers.get("Content-Type", "").startswith("application/json"):
        return  # refused by the HTTP parser, before any of our code
    check_http_answer(status, headers, body, repr(request[:200]))


async def test_authorization_that_is_not_utf8_is_401(world: World) -> None:
    """aiohttp reads header bytes that are not UTF-8 as lone surrogates: such a token is
    refused as malformed (it was hashed, raising UnicodeEncodeError: a 500)."""
    request = b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    request += b"Authorization: Bearer \xff\xfe\r\n\r\n"
    status, headers, body = await exchange(world, request)
    check_http_answer(status, headers, body, "non-UTF-8 token")
    assert status == 401, body
