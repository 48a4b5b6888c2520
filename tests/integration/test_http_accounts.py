"""HTTP API, accounts: register, login, logout, me (spec "HTTP API"; docs "Accounts and tokens")."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.api import Api

USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
PASSWORD = "correct horse"


async def register(api: Any, username: Any, password: Any = PASSWORD) -> tuple[int, Any]:
    return await api.call(
        "POST", "/api/v1/users", json={"username": username, "password": password}
    )


async def login(api: Any, username: Any, password: Any = PASSWORD) -> tuple[int, Any]:
    return await api.call(
        "POST", "/api/v1/login", json={"username": username, "password": password}
    )


async def raw_post(http: Any, url: str, data: bytes, content_type: str) -> tuple[int, Any]:
    async with http.post(url, data=data, headers={"Content-Type": content_type}) as r:
        return r.status, await r.json(content_type=None)


# --- register ------------------------------------------------------------------------------------


async def test_register_answers_201_with_the_user_object(api, unique):
    name = unique("reg")
    status, body = await register(api, name)
    assert status == 201, body
    assert body == {"user": {"name": name}}


async def test_register_answers_json_content_type(http, server, unique):
    payload = {"username": unique("ct"), "password": PASSWORD}
    async with http.post(server.url + "/api/v1/users", json=payload) as r:
        assert r.status == 201
        assert r.content_type == "application/json"


async def test_register_keeps_the_case_the_name_was_registered_with(api, unique):
    name = unique("MiXeD")
    status, body = await register(api, name)
    assert status == 201, body
    assert body["user"]["name"] == name
    status, body = await login(api, name)
    assert status == 200, body
    assert body["user"]["name"] == name


async def test_register_rejects_taken_name_with_409_conflict(api, unique, assert_error):
    name = unique("dup")
    assert (await register(api, name))[0] == 201
    assert_error(await register(api, name, "another password"), 409, "conflict")


async def test_register_rejects_taken_name_case_insensitively(api, unique, assert_error):
    name = unique("Case")
    assert (await register(api, name))[0] == 201
    assert_error(await register(api, name.upper()), 409, "conflict")
    assert_error(await register(api, name.lower()), 409, "conflict")


async def test_register_conflict_does_not_change_the_existing_account(api, unique):
    name = unique("keep")
    assert (await register(api, name, "first password"))[0] == 201
    assert (await register(api, name.upper(), "second password"))[0] == 409
    assert (await login(api, name, "first password"))[0] == 200
    assert (await login(api, name, "second password"))[0] == 401


@pytest.mark.parametrize(
    "username",
    [
        "",
        "x" * 33,
        "has space",
        " leading",
        "trailing ",
        "slash/name",
        "at@sign",
        "colon:name",
        "plus+name",
        "hash#name",
        "question?",
        "percent%20",
        "émile",
        "名前",
        "emoji😀",
        "new\nline",
        "tab\tname",
        "nul\x00name",
    ],
    ids=repr,
)
async def test_register_rejects_usernames_outside_the_allowed_pattern(api, username, assert_error):
    assert_error(await register(api, username), 400, "bad_request")


async def test_register_rejects_username_with_trailing_newline(api, unique, assert_error):
    # A `$`-anchored regex with re.match() would accept "name\n"; the rule is the whole string.
    assert_error(await register(api, unique("nl") + "\n"), 400, "bad_request")


async def test_register_accepts_usernames_at_the_edges_of_the_pattern(api, unique):
    longest = (unique("L") + "x" * 32)[:32]
    punctuated = unique("P") + ".a_b-C"
    for name in (longest, punctuated):
        status, body = await register(api, name)
        assert status == 201, (name, body)
        assert body["user"]["name"] == name


async def test_register_accepts_one_character_usernames(http, server_factory):
    # A dedicated server, so that no other test can have taken these short names.
    fresh = Api(http, server_factory().url)
    for name in ("9", "Z", "_", "-"):
        status, body = await register(fresh, name)
        assert status == 201, (name, body)
        assert body["user"]["name"] == name


@pytest.mark.parametrize("password", ["", "x", "1234567"], ids=len)
async def test_register_rejects_password_shorter_than_8_characters(
    api, unique, password, assert_error
):
    assert_error(await register(api, unique("pw"), password), 400, "bad_request")


async def test_register_rejects_password_longer_than_1024_characters(api, unique, assert_error):
    assert_error(await register(api, unique("pw"), "p" * 1025), 400, "bad_request")


@pytest.mark.parametrize("password", ["12345678", "p" * 1024], ids=len)
async def test_register_accepts_passwords_of_8_and_1024_characters(api, unique, password):
    name = unique("pw")
    status, body = await register(api, name, password)
    assert status == 201, body
    status, body = await login(api, name, password)
    assert status == 200, body


async def test_register_counts_password_length_in_characters_not_bytes(api, unique, assert_error):
    # 7 characters but 14 bytes in UTF-8: too short.
    assert_error(await register(api, unique("pw"), "é" * 7), 400, "bad_request")
    # 1,024 characters but 2,048 bytes: allowed.
    name = unique("pw")
    assert (await register(api, name, "é" * 1024))[0] == 201
    assert (await login(api, name, "é" * 1024))[0] == 200


def _missing_or_ill_typed(name: str) -> list[Any]:
    return [
        {},
        {"username": name},
        {"password": PASSWORD},
        {"username": None, "password": PASSWORD},
        {"username": name, "password": None},
        {"username": 12345, "password": PASSWORD},
        {"username": [name], "password": PASSWORD},
        {"username": name, "password": 123456789},
        {"username": name, "password": {"value": PASSWORD}},
    ]


async def test_register_rejects_missing_or_ill_typed_fields(api, unique, assert_error):
    name = unique("mf")
    for payload in _missing_or_ill_typed(name):
        result = await api.call("POST", "/api/v1/users", json=payload)
        assert result[0] == 400, (payload, result)
        assert_error(result, 400, "bad_request")
    # None of those attempts created the account.
    assert (await register(api, name))[0] == 201


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b"username=bob&password=12345678", "application/x-www-form-urlencoded"),
        (b"\xff\xfe\xfd", "application/json"),
    ],
    ids=["broken-json", "empty", "form-encoded", "not-utf8"],
)
async def test_register_rejects_a_body_that_is_not_json(
    http, server, data, content_type, assert_error
):
    assert_error(
        await raw_post(http, server.url + "/api/v1/users", data, content_type), 400, "bad_request"
    )


@pytest.mark.parametrize("data", [b"[]", b'["bob", "12345678"]', b'"bob"', b"42", b"null", b"true"])
async def test_register_rejects_json_that_is_not_an_object(http, server, data, assert_error):
    result = await raw_post(http, server.url + "/api/v1/users", data, "application/json")
    assert_error(result, 400, "bad_request")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(name=st.one_of(st.text(max_size=40), st.from_regex(USERNAME_RE, fullmatch=True)))
async def test_register_accepts_exactly_the_usernames_matching_the_pattern(api, name):
    status, body = await register(api, name)
    if USERNAME_RE.fullmatch(name):
        # Valid; 409 only if an earlier example (or test) took the same name.
        assert status in (201, 409), (name, status, body)
    else:
        assert status == 400, (name, status, body)
        assert body["error"]["code"] == "bad_request"


# --- login ---------------------------------------------------------------------------------------


async def test_login_answers_200_with_token_and_user(api, unique):
    name = unique("li")
    assert (await register(api, name))[0] == 201
    status, body = await login(api, name)
    assert status == 200, body
    assert isinstance(body["token"], str) and len(body["token"]) >= 16
    assert body["user"] == {"name": name}


async def test_login_token_authenticates_later_calls(api, unique):
    name = unique("li")
    assert (await register(api, name))[0] == 201
    _, body = await login(api, name)
    status, me = await api.call("GET", "/api/v1/me", body["token"])
    assert status == 200, me
    assert me["user"]["name"] == name


async def test_each_login_issues_a_distinct_token(api, unique):
    name = unique("li")
    assert (await register(api, name))[0] == 201
    tokens = {(await login(api, name))[1]["token"] for _ in range(3)}
    assert len(tokens) == 3


async def test_login_rejects_wrong_password_with_401_unauthorized(api, unique, assert_error):
    name = unique("li")
    assert (await register(api, name))[0] == 201
    assert_error(await login(api, name, "wrong password"), 401, "unauthorized")


async def test_login_rejects_unknown_user_with_401_unauthorized(api, unique, assert_error):
    assert_error(await login(api, unique("nobody")), 401, "unauthorized")


async def test_login_answers_unknown_user_exactly_like_wrong_password(api, unique):
    name = unique("probe")
    assert (await register(api, name))[0] == 201
    wrong_password = await login(api, name, "wrong password")
    unknown_user = await login(api, unique("ghost"), "wrong password")
    assert wrong_password[0] == unknown_user[0] == 401
    assert wrong_password[1] == unknown_user[1], "usernames can be probed through login"


async def test_login_matches_username_case_insensitively(api, unique):
    name = unique("CaSe")
    assert (await register(api, name))[0] == 201
    for variant in (name.lower(), name.upper()):
        status, body = await login(api, variant)
        assert status == 200, (variant, body)
        assert body["user"]["name"] == name


async def test_login_password_is_case_sensitive(api, unique, assert_error):
    name = unique("li")
    assert (await register(api, name, "Secret Password"))[0] == 201
    assert_error(await login(api, name, "secret password"), 401, "unauthorized")


async def test_login_rejects_a_body_that_is_not_a_json_object(http, server, assert_error):
    # Spec: a missing or ill-typed field / non-JSON is bad_request.
    url = server.url + "/api/v1/login"
    assert_error(await raw_post(http, url, b"{nope", "application/json"), 400, "bad_request")
    assert_error(await raw_post(http, url, b"[1, 2]", "application/json"), 400, "bad_request")


async def test_login_rejects_missing_fields_with_400(api, unique, assert_error):
    assert_error(
        await api.call("POST", "/api/v1/login", json={"username": unique("x")}), 400, "bad_request"
    )
    assert_error(
        await api.call("POST", "/api/v1/login", json={"password": PASSWORD}), 400, "bad_request"
    )


# --- logout --------------------------------------------------------------------------------------


async def test_logout_answers_204_and_the_token_stops_working(api, new_user, assert_error):
    me = await new_user()
    status, body = await api.call("POST", "/api/v1/logout", me.token)
    assert status == 204, body
    assert body is None
    assert_error(await api.call("GET", "/api/v1/me", me.token), 401, "unauthorized")
    assert_error(await api.call("GET", "/api/v1/rooms", me.token), 401, "unauthorized")


async def test_logout_twice_is_401_the_second_time(api, new_user, assert_error):
    me = await new_user()
    assert (await api.call("POST", "/api/v1/logout", me.token))[0] == 204
    assert_error(await api.call("POST", "/api/v1/logout", me.token), 401, "unauthorized")


async def test_logout_revokes_only_that_token(api, new_user):
    me = await new_user()
    _, second = await login(api, me.name)
    other_token = second["token"]
    assert (await api.call("POST", "/api/v1/logout", me.token))[0] == 204
    status, body = await api.call("GET", "/api/v1/me", other_token)
    assert status == 200, body
    assert body["user"]["name"] == me.name


async def test_logout_does_not_affect_other_users(api, new_user):
    alice, bob = await new_user(), await new_user()
    assert (await api.call("POST", "/api/v1/logout", alice.token))[0] == 204
    assert (await api.call("GET", "/api/v1/me", bob.token))[0] == 200


async def test_login_after_logout_issues_a_working_token(api, new_user):
    me = await new_user()
    assert (await api.call("POST", "/api/v1/logout", me.token))[0] == 204
    status, body = await login(api, me.name)
    assert status == 200
    assert (await api.call("GET", "/api/v1/me", body["token"]))[0] == 200


async def test_logout_closes_that_tokens_websocket_with_unauthorized_4001(api, new_user, connect):
    me = await new_user()
    _, second = await login(api, me.name)
    doomed = await connect(me.token)
    survivor = await connect(second["token"])

    assert (await api.call("POST", "/api/v1/logout", me.token))[0] == 204

    frame = await doomed.recv_type("error")
    assert frame["code"] == "unauthorized", frame
    msg = await asyncio.wait_for(doomed.ws.receive(), 5)
    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
    assert msg.data == 4001, f"close frame code {msg.data}"
    # The closing handshake completes: the server waits for the client's Close, so the client
    # ends with 4001 too (not 1006, which is what a dropped TCP connection looks like).
    assert doomed.ws.close_code == 4001, f"client saw close code {doomed.ws.close_code}"

    # The same user's connection with another token stays open and working.
    await survivor.send({"type": "ping", "ref": "still-here"})
    pong = await survivor.recv_type("pong")
    assert pong.get("ref") == "still-here"


async def test_revoked_token_cannot_open_a_websocket(api, new_user, connect):
    me = await new_user()
    assert (await api.call("POST", "/api/v1/logout", me.token))[0] == 204
    ws = await connect()
    await ws.send({"type": "hello", "token": me.token})
    frame = await ws.recv()
    assert frame["type"] == "error" and frame["code"] == "unauthorized", frame
    assert await ws.expect_close() == 4001


# --- me ------------------------------------------------------------------------------------------


async def test_me_answers_user_and_no_rooms_for_a_new_user(api, new_user):
    me = await new_user()
    status, body = await api.call("GET", "/api/v1/me", me.token)
    assert status == 200, body
    assert body == {"user": {"name": me.name}, "rooms": []}


async def test_me_lists_exactly_the_rooms_i_belong_to(api, new_user):
    me, other = await new_user(), await new_user()
    mine_public = await api.room(me.token)
    mine_private = await api.room(me.token, private=True)
    joined = await api.room(other.token)
    not_joined = await api.room(other.token)
    invited_private = await api.room(other.token, private=True)
    assert (await api.call("PUT", f"/api/v1/rooms/{joined}/members/{me.name}", me.token))[0] == 204
    status, _ = await api.call(
        "PUT", f"/api/v1/rooms/{invited_private}/members/{me.name}", other.token
    )
    assert status == 204

    status, body = await api.call("GET", "/api/v1/me", me.token)
    assert status == 200, body
    names = {room["name"] for room in body["rooms"]}
    assert names == {mine_public, mine_private, joined, invited_private}
    assert not_joined not in names
    by_name = {room["name"]: room for room in body["rooms"]}
    assert by_name[mine_private]["private"] is True
    assert by_name[mine_public]["owner"] == me.name
    assert by_name[joined]["owner"] == other.name


async def test_me_forgets_a_room_after_leaving_it(api, new_user):
    me, other = await new_user(), await new_user()
    room = await api.room(other.token)
    assert (await api.call("PUT", f"/api/v1/rooms/{room}/members/{me.name}", me.token))[0] == 204
    assert (await api.call("DELETE", f"/api/v1/rooms/{room}/members/{me.name}", me.token))[0] == 204
    _, body = await api.call("GET", "/api/v1/me", me.token)
    assert room not in {r["name"] for r in body["rooms"]}
