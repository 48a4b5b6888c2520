"""HTTP API, rooms: create, list, get, members, moderators, bans (spec "HTTP API"; docs
"Rooms, roles, membership"), and 401 on every authenticated route."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOM_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def room_of(body: Any) -> dict[str, Any]:
    """The room object of a GET /rooms/{room} answer.

    The spec lists the fields of "one room" without saying whether they come wrapped like the
    create answer (`{"room": {...}}`); both forms are accepted.
    """
    assert isinstance(body, dict), body
    room = body.get("room", body)
    assert isinstance(room, dict), body
    return room


async def get_room(api: Any, room: str, token: str) -> dict[str, Any]:
    status, body = await api.call("GET", f"/api/v1/rooms/{room}", token)
    assert status == 200, (status, body)
    return room_of(body)


async def members_of(api: Any, room: str, token: str) -> list[str]:
    return list((await get_room(api, room, token))["members"])


def banned_names(body: Any) -> set[str]:
    """Names from GET /rooms/{room}/bans. The docs say it "lists banned names" without a shape;
    a `bans` or `users` list of names (or of objects with a name) is accepted."""
    assert isinstance(body, dict), body
    entries = body["bans"] if "bans" in body else body["users"]
    names = set()
    for entry in entries:
        if isinstance(entry, str):
            names.add(entry)
        else:
            names.add(entry.get("user") or entry["name"])
    return names


def member_path(room: str, user: str) -> str:
    return f"/api/v1/rooms/{room}/members/{user}"


def mod_path(room: str, user: str) -> str:
    return f"/api/v1/rooms/{room}/moderators/{user}"


def ban_path(room: str, user: str) -> str:
    return f"/api/v1/rooms/{room}/bans/{user}"


# --- create --------------------------------------------------------------------------------------


async def test_create_room_answers_201_with_the_full_room_object(api, new_user, unique):
    owner = await new_user()
    name = unique("r")
    before_ms = int(time.time() * 1000)
    status, body = await api.call("POST", "/api/v1/rooms", owner.token, json={"name": name})
    assert status == 201, body
    assert set(body) == {"room"}
    room = body["room"]
    assert room["name"] == name
    assert room["topic"] == ""
    assert room["private"] is False
    assert room["owner"] == owner.name
    assert room["moderators"] == []
    assert room["members"] == [owner.name]
    assert room["last_seq"] == 0
    assert isinstance(room["created_at"], int)
    assert before_ms - 60_000 <= room["created_at"] <= int(time.time() * 1000) + 60_000


async def test_create_room_keeps_topic_and_private_flag(api, new_user, unique):
    owner = await new_user()
    name = unique("r")
    payload = {"name": name, "topic": "Plans for the weekend ☀", "private": True}
    status, body = await api.call("POST", "/api/v1/rooms", owner.token, json=payload)
    assert status == 201, body
    assert body["room"]["topic"] == "Plans for the weekend ☀"
    assert body["room"]["private"] is True
    fetched = await get_room(api, name, owner.token)
    assert fetched["topic"] == "Plans for the weekend ☀"
    assert fetched["private"] is True


async def test_get_room_answers_what_create_answered(api, new_user, unique):
    owner = await new_user()
    name = unique("r")
    _, created = await api.call("POST", "/api/v1/rooms", owner.token, json={"name": name})
    fetched = await get_room(api, name, owner.token)
    for key in ("name", "topic", "private", "owner", "moderators", "members", "last_seq"):
        assert fetched[key] == created["room"][key], key


async def test_create_room_rejects_duplicate_name_with_409_conflict(api, new_user, assert_error):
    alice, bob = await new_user(), await new_user()
    name = await api.room(alice.token)
    result = await api.call("POST", "/api/v1/rooms", bob.token, json={"name": name})
    assert_error(result, 409, "conflict")
    # The room is unchanged: still alice's.
    assert (await get_room(api, name, alice.token))["owner"] == alice.name


async def test_create_room_rejects_name_of_an_existing_private_room(api, new_user, assert_error):
    alice, bob = await new_user(), await new_user()
    name = await api.room(alice.token, private=True)
    result = await api.call("POST", "/api/v1/rooms", bob.token, json={"name": name})
    assert_error(result, 409, "conflict")


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Upper",
        "ALLCAPS",
        "-leading-dash",
        "_leading-underscore",
        "x" * 65,
        "has space",
        "dot.ted",
        "slash/name",
        "colon:name",
        "ünïcode",
        "trailing\n",
    ],
    ids=repr,
)
async def test_create_room_rejects_names_outside_the_pattern(api, new_user, name, assert_error):
    owner = await new_user()
    result = await api.call("POST", "/api/v1/rooms", owner.token, json={"name": name})
    assert_error(result, 400, "bad_request")


async def test_create_room_accepts_names_at_the_edges_of_the_pattern(api, new_user, unique):
    owner = await new_user()
    longest = (unique("r") + "z" * 64)[:64]
    digit_first = "0" + unique("r") + "_-x"
    for name in (longest, digit_first):
        status, body = await api.call("POST", "/api/v1/rooms", owner.token, json={"name": name})
        assert status == 201, (name, body)
        assert body["room"]["name"] == name


@pytest.fixture
async def creator(new_user):
    """One user for all the examples of a hypothesis test (set up once per test)."""
    return await new_user()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(name=st.one_of(st.text(max_size=70), st.from_regex(ROOM_RE, fullmatch=True)))
async def test_create_room_accepts_exactly_the_names_matching_the_pattern(api, creator, name):
    status, body = await api.call("POST", "/api/v1/rooms", creator.token, json={"name": name})
    if ROOM_RE.fullmatch(name):
        assert status in (201, 409), (name, status, body)
    else:
        assert status == 400, (name, status, body)
        assert body["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"topic": "no name"},
        {"name": None},
        {"name": 42},
        {"name": ["room"]},
        {"name": "NAME", "private": "yes"},
        {"name": "NAME", "private": 1},
        {"name": "NAME", "topic": 5},
        {"name": "NAME", "topic": ["a"]},
    ],
    ids=repr,
)
async def test_create_room_rejects_missing_or_ill_typed_fields(
    api, new_user, unique, payload, assert_error
):
    owner = await new_user()
    name = unique("r")
    payload = {k: (name if v == "NAME" else v) for k, v in payload.items()}
    result = await api.call("POST", "/api/v1/rooms", owner.token, json=payload)
    assert_error(result, 400, "bad_request")
    # Nothing was created under that name.
    status, _ = await api.call("GET", f"/api/v1/rooms/{name}", owner.token)
    assert status == 404


@pytest.mark.parametrize("data", [b"{oops", b"[]", b'"room"', b"null"])
async def test_create_room_rejects_a_body_that_is_not_a_json_object(
    http, server, new_user, data, assert_error
):
    owner = await new_user()
    headers = {"Authorization": f"Bearer {owner.token}", "Content-Type": "application/json"}
    async with http.post(server.url + "/api/v1/rooms", data=data, headers=headers) as r:
        result = r.status, await r.json(content_type=None)
    assert_error(result, 400, "bad_request")


# --- list and get --------------------------------------------------------------------------------


async def test_list_rooms_shows_public_rooms_and_my_private_rooms_only(api, new_user):
    alice, bob = await new_user(), await new_user()
    alice_public = await api.room(alice.token)
    alice_private = await api.room(alice.token, private=True)
    bob_private = await api.room(bob.token, private=True)

    status, body = await api.call("GET", "/api/v1/rooms", alice.token)
    assert status == 200, body
    alice_sees = {r["name"] for r in body["rooms"]}
    assert {alice_public, alice_private} <= alice_sees
    assert bob_private not in alice_sees

    status, body = await api.call("GET", "/api/v1/rooms", bob.token)
    assert status == 200, body
    bob_sees = {r["name"] for r in body["rooms"]}
    assert {alice_public, bob_private} <= bob_sees
    assert alice_private not in bob_sees


async def test_list_rooms_shows_a_private_room_once_invited(api, new_user):
    alice, bob = await new_user(), await new_user()
    room = await api.room(alice.token, private=True)
    assert (await api.call("PUT", member_path(room, bob.name), alice.token))[0] == 204
    _, body = await api.call("GET", "/api/v1/rooms", bob.token)
    assert room in {r["name"] for r in body["rooms"]}


async def test_list_rooms_is_ordered_by_name_and_holds_room_objects(api, new_user):
    me = await new_user()
    await api.room(me.token)
    await api.room(me.token, private=True)
    status, body = await api.call("GET", "/api/v1/rooms", me.token)
    assert status == 200
    names = [r["name"] for r in body["rooms"]]
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for room in body["rooms"]:
        assert {"name", "topic", "private", "owner"} <= set(room), room


async def test_get_room_answers_404_not_found_for_a_missing_room(
    api, new_user, unique, assert_error
):
    me = await new_user()
    assert_error(await api.call("GET", f"/api/v1/rooms/{unique('r')}", me.token), 404, "not_found")


async def test_get_private_room_is_404_for_non_members_exactly_like_a_missing_room(
    api, new_user, unique, assert_error
):
    alice, bob = await new_user(), await new_user()
    private = await api.room(alice.token, private=True)
    hidden = assert_error(
        await api.call("GET", f"/api/v1/rooms/{private}", bob.token), 404, "not_found"
    )
    missing_name = unique("r")
    missing = assert_error(
        await api.call("GET", f"/api/v1/rooms/{missing_name}", bob.token), 404, "not_found"
    )
    assert hidden["message"].replace(private, "ROOM") == missing["message"].replace(
        missing_name, "ROOM"
    ), "the message tells a hidden room from a missing one"


async def test_public_room_is_readable_by_a_non_member(api, new_user):
    alice, bob = await new_user(), await new_user()
    room = await api.room(alice.token, topic="open to all")
    fetched = await get_room(api, room, bob.token)
    assert fetched["name"] == room
    assert fetched["topic"] == "open to all"
    assert bob.name not in fetched["members"]


# --- 401 on every authenticated route ------------------------------------------------------------

AUTHENTICATED_ROUTES = [
    ("GET", "/api/v1/me"),
    ("POST", "/api/v1/logout"),
    ("GET", "/api/v1/rooms"),
    ("POST", "/api/v1/rooms"),
    ("GET", "/api/v1/rooms/{room}"),
    ("PUT", "/api/v1/rooms/{room}/members/{user}"),
    ("DELETE", "/api/v1/rooms/{room}/members/{user}"),
    ("PUT", "/api/v1/rooms/{room}/moderators/{user}"),
    ("DELETE", "/api/v1/rooms/{room}/moderators/{user}"),
    ("PUT", "/api/v1/rooms/{room}/bans/{user}"),
    ("DELETE", "/api/v1/rooms/{room}/bans/{user}"),
    ("GET", "/api/v1/rooms/{room}/bans"),
    ("GET", "/api/v1/rooms/{room}/messages"),
    ("GET", "/api/v1/rooms/{room}/presence"),
]


@pytest.mark.parametrize(("method", "template"), AUTHENTICATED_ROUTES, ids=" ".join)
async def test_authenticated_route_answers_401_without_a_valid_token(
    http, server, api, party, unique, method, template, assert_error
):
    p = await party(members=1)
    path = template.format(room=p.room, user=p.members[0].name)
    payload = {"name": unique("r")} if template == "/api/v1/rooms" else None
    bad_headers = [
        {},
        {"Authorization": "Bearer not-a-real-token"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {p.owner.token}"},
        {"Authorization": p.owner.token},
    ]
    for headers in bad_headers:
        async with http.request(method, server.url + path, json=payload, headers=headers) as r:
            result = r.status, await r.json(content_type=None)
        assert result[0] == 401, (headers, result)
        assert_error(result, 401, "unauthorized")
    # Nothing happened: the owner's token still works and the room is as it was.
    room = await get_room(api, p.room, p.owner.token)
    assert set(room["members"]) == {p.owner.name, p.members[0].name}
    assert room["moderators"] == []
    _, bans = await api.call("GET", f"/api/v1/rooms/{p.room}/bans", p.owner.token)
    assert banned_names(bans) == set()
    if payload is not None:
        status, _ = await api.call("GET", f"/api/v1/rooms/{payload['name']}", p.owner.token)
        assert status == 404, "a room was created without a valid token"


# --- members: join, invite, leave, kick ----------------------------------------------------------


async def test_user_joins_a_public_room_with_204(api, new_user):
    alice, bob = await new_user(), await new_user()
    room = await api.room(alice.token)
    status, body = await api.call("PUT", member_path(room, bob.name), bob.token)
    assert status == 204, body
    assert body is None
    assert bob.name in await members_of(api, room, bob.token)
    _, me = await api.call("GET", "/api/v1/me", bob.token)
    assert room in {r["name"] for r in me["rooms"]}


async def test_joining_a_room_twice_is_a_no_op_204(api, new_user):
    alice, bob = await new_user(), await new_user()
    room = await api.room(alice.token)
    assert (await api.call("PUT", member_path(room, bob.name), bob.token))[0] == 204
    assert (await api.call("PUT", member_path(room, bob.name), bob.token))[0] == 204
    assert (await members_of(api, room, bob.token)).count(bob.name) == 1


async def test_member_urls_match_usernames_case_insensitively(api, new_user, unique):
    alice = await new_user()
    bob = await new_user(unique("BoB"))
    room = await api.room(alice.token)
    # bob names himself in another case: still a self-join, and stored under his own spelling.
    assert (await api.call("PUT", member_path(room, bob.name.lower()), bob.token))[0] == 204
    members = await members_of(api, room, alice.token)
    assert bob.name in members
    assert bob.name.lower() not in members
    assert (await api.call("DELETE", member_path(room, bob.name.upper()), bob.token))[0] == 204
    assert bob.name not in await members_of(api, room, alice.token)


async def test_self_join_of_a_private_room_is_404_not_found(api, new_user, assert_error):
    alice, bob = await new_user(), await new_user()
    room = await api.room(alice.token, private=True)
    assert_error(await api.call("PUT", member_path(room, bob.name), bob.token), 404, "not_found")
    assert bob.name not in await members_of(api, room, alice.token)


async def test_join_of_a_missing_room_is_404_not_found(api, new_user, unique, assert_error):
    bob = await new_user()
    result = await api.call("PUT", member_path(unique("r"), bob.name), bob.token)
    assert_error(result, 404, "not_found")


async def test_owner_invites_a_user_to_a_private_room(api, new_user):
    alice, bob = await new_user(), await new_user()
    room = await api.room(alice.token, private=True)
    assert (await api.call("PUT", member_path(room, bob.name), alice.token))[0] == 204
    fetched = await get_room(api, room, bob.token)
    assert bob.name in fetched["members"]


async def test_moderator_invites_a_user_to_a_private_room(api, party, new_user):
    p = await party(private=True, moderators=1)
    carol = await new_user()
    assert (await api.call("PUT", member_path(p.room, carol.name), p.moderators[0].token))[0] == 204
    assert carol.name in await members_of(api, p.room, carol.token)


async def test_plain_member_cannot_invite_to_a_private_room(api, party, new_user, assert_error):
    p = await party(private=True, members=1)
    carol = await new_user()
    result = await api.call("PUT", member_path(p.room, carol.name), p.members[0].token)
    assert_error(result, 403, "forbidden")
    assert carol.name not in await members_of(api, p.room, p.owner.token)


async def test_non_member_cannot_add_someone_else_to_a_public_room(api, new_user, assert_error):
    alice, bob, carol = await new_user(), await new_user(), await new_user()
    room = await api.room(alice.token)
    assert_error(await api.call("PUT", member_path(room, carol.name), bob.token), 403, "forbidden")
    assert carol.name not in await members_of(api, room, alice.token)


async def test_plain_member_cannot_add_someone_else_to_a_public_room(
    api, party, new_user, assert_error
):
    p = await party(members=1)
    carol = await new_user()
    result = await api.call("PUT", member_path(p.room, carol.name), p.members[0].token)
    assert_error(result, 403, "forbidden")


async def test_owner_adds_someone_to_a_public_room(api, new_user):
    alice, bob = await new_user(), await new_user()
    room = await api.room(alice.token)
    assert (await api.call("PUT", member_path(room, bob.name), alice.token))[0] == 204
    assert bob.name in await members_of(api, room, alice.token)


async def test_inviting_an_unknown_user_is_404_not_found(api, new_user, unique, assert_error):
    # Docs are silent on unknown users here; not_found is the careful answer (a 204 would
    # pretend that a membership now exists).
    alice = await new_user()
    room = await api.room(alice.token, private=True)
    result = await api.call("PUT", member_path(room, unique("ghost")), alice.token)
    assert_error(result, 404, "not_found")


async def test_member_leaves_a_room_with_204(api, party):
    p = await party(members=1)
    bob = p.members[0]
    status, body = await api.call("DELETE", member_path(p.room, bob.name), bob.token)
    assert status == 204, body
    assert bob.name not in await members_of(api, p.room, p.owner.token)


async def test_member_who_leaves_a_private_room_can_no_longer_see_it(api, party, assert_error):
    p = await party(private=True, members=1)
    bob = p.members[0]
    assert (await api.call("DELETE", member_path(p.room, bob.name), bob.token))[0] == 204
    assert_error(await api.call("GET", f"/api/v1/rooms/{p.room}", bob.token), 404, "not_found")
    _, rooms = await api.call("GET", "/api/v1/rooms", bob.token)
    assert p.room not in {r["name"] for r in rooms["rooms"]}


async def test_owner_cannot_leave_their_room(api, new_user, assert_error):
    alice = await new_user()
    room = await api.room(alice.token)
    assert_error(
        await api.call("DELETE", member_path(room, alice.name), alice.token), 403, "forbidden"
    )
    fetched = await get_room(api, room, alice.token)
    assert fetched["owner"] == alice.name
    assert alice.name in fetched["members"]


async def test_removing_a_non_member_is_a_no_op_204(api, new_user):
    alice, bob = await new_user(), await new_user()
    room = await api.room(alice.token)
    assert (await api.call("DELETE", member_path(room, bob.name), alice.token))[0] == 204
    assert (await api.call("DELETE", member_path(room, bob.name), bob.token))[0] == 204
    assert await members_of(api, room, alice.token) == [alice.name]


async def test_owner_kicks_a_member(api, party):
    p = await party(members=1)
    bob = p.members[0]
    assert (await api.call("DELETE", member_path(p.room, bob.name), p.owner.token))[0] == 204
    assert bob.name not in await members_of(api, p.room, p.owner.token)


async def test_moderator_kicks_a_member(api, party):
    p = await party(moderators=1, members=1)
    bob = p.members[0]
    result = await api.call("DELETE", member_path(p.room, bob.name), p.moderators[0].token)
    assert result[0] == 204, result
    assert bob.name not in await members_of(api, p.room, p.owner.token)


async def test_kicked_user_can_rejoin_a_public_room(api, party):
    p = await party(members=1)
    bob = p.members[0]
    assert (await api.call("DELETE", member_path(p.room, bob.name), p.owner.token))[0] == 204
    assert (await api.call("PUT", member_path(p.room, bob.name), bob.token))[0] == 204
    assert bob.name in await members_of(api, p.room, p.owner.token)


async def test_plain_member_cannot_kick_another_member(api, party, assert_error):
    p = await party(members=2)
    bob, carol = p.members
    result = await api.call("DELETE", member_path(p.room, carol.name), bob.token)
    assert_error(result, 403, "forbidden")
    assert carol.name in await members_of(api, p.room, p.owner.token)


async def test_moderator_cannot_kick_the_owner(api, party, assert_error):
    p = await party(moderators=1)
    result = await api.call("DELETE", member_path(p.room, p.owner.name), p.moderators[0].token)
    assert_error(result, 403, "forbidden")
    assert p.owner.name in await members_of(api, p.room, p.owner.token)


async def test_moderator_cannot_kick_another_moderator(api, party, assert_error):
    p = await party(moderators=2)
    first, second = p.moderators
    assert_error(
        await api.call("DELETE", member_path(p.room, second.name), first.token), 403, "forbidden"
    )
    room = await get_room(api, p.room, p.owner.token)
    assert second.name in room["members"]
    assert second.name in room["moderators"]


async def test_owner_kicks_a_moderator(api, party):
    p = await party(moderators=1)
    mod = p.moderators[0]
    assert (await api.call("DELETE", member_path(p.room, mod.name), p.owner.token))[0] == 204
    room = await get_room(api, p.room, p.owner.token)
    assert mod.name not in room["members"]
    assert mod.name not in room["moderators"]


async def test_moderator_can_leave(api, party):
    p = await party(moderators=1)
    mod = p.moderators[0]
    assert (await api.call("DELETE", member_path(p.room, mod.name), mod.token))[0] == 204
    room = await get_room(api, p.room, p.owner.token)
    assert mod.name not in room["members"]
    assert mod.name not in room["moderators"]


@pytest.mark.parametrize(
    ("action", "reason"), [("kick", "kicked"), ("ban", "banned"), ("leave", "left")]
)
async def test_removal_over_http_tells_the_users_connections_left_with_reason(
    api, party, connect, action, reason
):
    p = await party(members=1)
    bob = p.members[0]
    ws = await connect(bob.token)
    await ws.join(p.room)
    if action == "kick":
        result = await api.call("DELETE", member_path(p.room, bob.name), p.owner.token)
    elif action == "ban":
        result = await api.call("PUT", ban_path(p.room, bob.name), p.owner.token)
    else:
        result = await api.call("DELETE", member_path(p.room, bob.name), bob.token)
    assert result[0] == 204, result
    frame = await ws.recv_type("left")
    assert frame["room"] == p.room
    assert frame["reason"] == reason


# --- moderators ----------------------------------------------------------------------------------


async def test_owner_promotes_a_member_to_moderator(api, party):
    p = await party(members=1)
    bob = p.members[0]
    status, body = await api.call("PUT", mod_path(p.room, bob.name), p.owner.token)
    assert status == 204, body
    room = await get_room(api, p.room, p.owner.token)
    assert room["moderators"] == [bob.name]
    assert bob.name in room["members"]


async def test_promoted_moderator_can_kick_and_invite(api, party, new_user):
    p = await party(private=True, members=2)
    bob, carol = p.members
    dave = await new_user()
    # Before promotion bob may not kick.
    assert (await api.call("DELETE", member_path(p.room, carol.name), bob.token))[0] == 403
    assert (await api.call("PUT", mod_path(p.room, bob.name), p.owner.token))[0] == 204
    assert (await api.call("DELETE", member_path(p.room, carol.name), bob.token))[0] == 204
    assert (await api.call("PUT", member_path(p.room, dave.name), bob.token))[0] == 204
    members = await members_of(api, p.room, p.owner.token)
    assert carol.name not in members
    assert dave.name in members


async def test_owner_demotes_a_moderator_who_then_cannot_kick(api, party, assert_error):
    p = await party(moderators=1, members=1)
    mod, carol = p.moderators[0], p.members[0]
    assert (await api.call("DELETE", mod_path(p.room, mod.name), p.owner.token))[0] == 204
    room = await get_room(api, p.room, p.owner.token)
    assert room["moderators"] == []
    assert mod.name in room["members"], "demotion must not remove the membership"
    assert_error(
        await api.call("DELETE", member_path(p.room, carol.name), mod.token), 403, "forbidden"
    )


async def test_promoting_twice_lists_the_moderator_once(api, party):
    p = await party(members=1)
    bob = p.members[0]
    assert (await api.call("PUT", mod_path(p.room, bob.name), p.owner.token))[0] == 204
    assert (await api.call("PUT", mod_path(p.room, bob.name), p.owner.token))[0] == 204
    assert (await get_room(api, p.room, p.owner.token))["moderators"] == [bob.name]


async def test_moderator_cannot_promote_a_member(api, party, assert_error):
    p = await party(moderators=1, members=1)
    result = await api.call("PUT", mod_path(p.room, p.members[0].name), p.moderators[0].token)
    assert_error(result, 403, "forbidden")
    assert (await get_room(api, p.room, p.owner.token))["moderators"] == [p.moderators[0].name]


async def test_moderator_cannot_demote_a_moderator(api, party, assert_error):
    p = await party(moderators=2)
    first, second = p.moderators
    assert_error(
        await api.call("DELETE", mod_path(p.room, second.name), first.token), 403, "forbidden"
    )
    assert second.name in (await get_room(api, p.room, p.owner.token))["moderators"]


async def test_plain_member_cannot_promote_themselves(api, party, assert_error):
    p = await party(members=1)
    bob = p.members[0]
    assert_error(await api.call("PUT", mod_path(p.room, bob.name), bob.token), 403, "forbidden")
    assert (await get_room(api, p.room, p.owner.token))["moderators"] == []


async def test_non_member_cannot_promote_on_a_public_room(api, party, new_user, assert_error):
    p = await party(members=1)
    outsider = await new_user()
    result = await api.call("PUT", mod_path(p.room, p.members[0].name), outsider.token)
    assert_error(result, 403, "forbidden")


async def test_moderators_of_a_private_room_are_404_for_outsiders(
    api, party, new_user, assert_error
):
    p = await party(private=True, members=1)
    outsider = await new_user()
    result = await api.call("PUT", mod_path(p.room, p.members[0].name), outsider.token)
    assert_error(result, 404, "not_found")


async def test_promoting_a_non_member_is_404_not_found(api, party, new_user, unique, assert_error):
    p = await party()
    carol = await new_user()
    assert_error(
        await api.call("PUT", mod_path(p.room, carol.name), p.owner.token), 404, "not_found"
    )
    assert_error(
        await api.call("PUT", mod_path(p.room, unique("ghost")), p.owner.token), 404, "not_found"
    )
    assert (await get_room(api, p.room, p.owner.token))["moderators"] == []


async def test_moderators_of_a_missing_room_is_404(api, new_user, unique, assert_error):
    alice = await new_user()
    result = await api.call("PUT", mod_path(unique("r"), alice.name), alice.token)
    assert_error(result, 404, "not_found")


# --- bans ----------------------------------------------------------------------------------------


async def test_ban_removes_membership_and_lists_the_user(api, party):
    p = await party(members=1)
    bob = p.members[0]
    status, body = await api.call("PUT", ban_path(p.room, bob.name), p.owner.token)
    assert status == 204, body
    assert bob.name not in await members_of(api, p.room, p.owner.token)
    status, body = await api.call("GET", f"/api/v1/rooms/{p.room}/bans", p.owner.token)
    assert status == 200, body
    assert banned_names(body) == {bob.name}


async def test_banned_user_gets_403_forbidden_on_a_public_room(api, party, assert_error):
    p = await party(members=1)
    bob = p.members[0]
    assert (await api.call("PUT", ban_path(p.room, bob.name), p.owner.token))[0] == 204
    room_path = f"/api/v1/rooms/{p.room}"
    for method, path in [
        ("GET", room_path),
        ("GET", room_path + "/messages"),
        ("GET", room_path + "/presence"),
        ("PUT", member_path(p.room, bob.name)),
    ]:
        result = await api.call(method, path, bob.token)
        assert result[0] == 403, (method, path, result)
        assert_error(result, 403, "forbidden")
    assert bob.name not in await members_of(api, p.room, p.owner.token)


async def test_banned_user_cannot_rejoin_over_websocket(party, api, connect):
    p = await party(members=1)
    bob = p.members[0]
    assert (await api.call("PUT", ban_path(p.room, bob.name), p.owner.token))[0] == 204
    ws = await connect(bob.token)
    await ws.send({"type": "join", "room": p.room, "ref": "j"})
    frame = await ws.recv_type("error")
    assert frame["code"] == "forbidden", frame
    assert bob.name not in await members_of(api, p.room, p.owner.token)


async def test_banned_user_sees_a_private_room_as_404(api, party, unique, assert_error):
    p = await party(private=True, members=1)
    bob = p.members[0]
    assert (await api.call("PUT", ban_path(p.room, bob.name), p.owner.token))[0] == 204
    for path in (f"/api/v1/rooms/{p.room}", f"/api/v1/rooms/{p.room}/messages"):
        assert_error(await api.call("GET", path, bob.token), 404, "not_found")
    _, rooms = await api.call("GET", "/api/v1/rooms", bob.token)
    assert p.room not in {r["name"] for r in rooms["rooms"]}


async def test_user_can_be_banned_before_ever_joining(api, party, new_user, assert_error):
    p = await party()
    carol = await new_user()
    assert (await api.call("PUT", ban_path(p.room, carol.name), p.owner.token))[0] == 204
    assert_error(
        await api.call("PUT", member_path(p.room, carol.name), carol.token), 403, "forbidden"
    )


async def test_adding_a_banned_user_is_403_even_for_the_owner(api, party, assert_error):
    p = await party(private=True, members=1)
    bob = p.members[0]
    assert (await api.call("PUT", ban_path(p.room, bob.name), p.owner.token))[0] == 204
    result = await api.call("PUT", member_path(p.room, bob.name), p.owner.token)
    assert_error(result, 403, "forbidden")
    assert bob.name not in await members_of(api, p.room, p.owner.token)


async def test_unban_lets_the_user_rejoin_without_restoring_membership(api, party):
    p = await party(members=1)
    bob = p.members[0]
    assert (await api.call("PUT", ban_path(p.room, bob.name), p.owner.token))[0] == 204
    status, body = await api.call("DELETE", ban_path(p.room, bob.name), p.owner.token)
    assert status == 204, body
    room = await get_room(api, p.room, bob.token)
    assert bob.name not in room["members"]
    _, bans = await api.call("GET", f"/api/v1/rooms/{p.room}/bans", p.owner.token)
    assert banned_names(bans) == set()
    assert (await api.call("PUT", member_path(p.room, bob.name), bob.token))[0] == 204
    assert bob.name in await members_of(api, p.room, p.owner.token)


async def test_unban_of_a_private_room_allows_a_new_invitation(api, party):
    p = await party(private=True, members=1)
    bob = p.members[0]
    assert (await api.call("PUT", ban_path(p.room, bob.name), p.owner.token))[0] == 204
    assert (await api.call("DELETE", ban_path(p.room, bob.name), p.owner.token))[0] == 204
    assert (await api.call("GET", f"/api/v1/rooms/{p.room}", bob.token))[0] == 404
    assert (await api.call("PUT", member_path(p.room, bob.name), p.owner.token))[0] == 204
    assert bob.name in await members_of(api, p.room, bob.token)


async def test_moderator_bans_and_unbans_a_member(api, party):
    p = await party(moderators=1, members=1)
    mod, bob = p.moderators[0], p.members[0]
    assert (await api.call("PUT", ban_path(p.room, bob.name), mod.token))[0] == 204
    _, body = await api.call("GET", f"/api/v1/rooms/{p.room}/bans", mod.token)
    assert banned_names(body) == {bob.name}
    assert (await api.call("DELETE", ban_path(p.room, bob.name), mod.token))[0] == 204
    _, body = await api.call("GET", f"/api/v1/rooms/{p.room}/bans", mod.token)
    assert banned_names(body) == set()


async def test_moderator_cannot_ban_the_owner(api, party, assert_error):
    p = await party(moderators=1)
    result = await api.call("PUT", ban_path(p.room, p.owner.name), p.moderators[0].token)
    assert_error(result, 403, "forbidden")
    assert p.owner.name in await members_of(api, p.room, p.owner.token)


async def test_moderator_cannot_ban_another_moderator(api, party, assert_error):
    p = await party(moderators=2)
    first, second = p.moderators
    assert_error(
        await api.call("PUT", ban_path(p.room, second.name), first.token), 403, "forbidden"
    )
    assert second.name in await members_of(api, p.room, p.owner.token)


async def test_owner_cannot_be_banned_even_by_themselves(api, party, assert_error):
    # Docs: "The owner cannot leave or be removed (403)", and a ban removes.
    p = await party()
    result = await api.call("PUT", ban_path(p.room, p.owner.name), p.owner.token)
    assert_error(result, 403, "forbidden")
    assert p.owner.name in await members_of(api, p.room, p.owner.token)


async def test_owner_bans_a_moderator(api, party):
    p = await party(moderators=1)
    mod = p.moderators[0]
    assert (await api.call("PUT", ban_path(p.room, mod.name), p.owner.token))[0] == 204
    room = await get_room(api, p.room, p.owner.token)
    assert mod.name not in room["members"]
    assert mod.name not in room["moderators"]


async def test_plain_member_cannot_ban_or_unban(api, party, assert_error):
    p = await party(members=2)
    bob, carol = p.members
    assert_error(await api.call("PUT", ban_path(p.room, carol.name), bob.token), 403, "forbidden")
    assert carol.name in await members_of(api, p.room, p.owner.token)
    assert (await api.call("PUT", ban_path(p.room, carol.name), p.owner.token))[0] == 204
    assert_error(
        await api.call("DELETE", ban_path(p.room, carol.name), bob.token), 403, "forbidden"
    )
    _, body = await api.call("GET", f"/api/v1/rooms/{p.room}/bans", p.owner.token)
    assert banned_names(body) == {carol.name}


async def test_plain_member_cannot_list_bans(api, party, assert_error):
    p = await party(members=1)
    result = await api.call("GET", f"/api/v1/rooms/{p.room}/bans", p.members[0].token)
    assert_error(result, 403, "forbidden")


async def test_bans_of_a_private_room_are_404_for_outsiders(api, party, new_user, assert_error):
    p = await party(private=True, members=1)
    outsider = await new_user()
    path = f"/api/v1/rooms/{p.room}/bans"
    assert_error(await api.call("GET", path, outsider.token), 404, "not_found")
    result = await api.call("PUT", ban_path(p.room, p.members[0].name), outsider.token)
    assert_error(result, 404, "not_found")
    assert p.members[0].name in await members_of(api, p.room, p.owner.token)


async def test_bans_of_a_missing_room_are_404(api, new_user, unique, assert_error):
    alice = await new_user()
    room = unique("r")
    assert_error(await api.call("GET", f"/api/v1/rooms/{room}/bans", alice.token), 404, "not_found")
    assert_error(await api.call("PUT", ban_path(room, alice.name), alice.token), 404, "not_found")
