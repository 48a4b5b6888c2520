"""The chat rules (`Chat`) on every engine, with the in-process bus and presence."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from argon2 import PasswordHasher
from support.engine_handles import BusRecorder, EngineUnderTest

from hubbub.core.chat import Chat, token_hash
from hubbub.engine.base import Role
from hubbub.engine.memory import MemoryBus, MemoryPresence
from hubbub.protocol.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from hubbub.protocol.frames import FrameError, History, parse_frame

PASSWORD = "correct horse"
TOKEN_TTL = 3_600  # seconds


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class World:
    """A Chat and everything around it that the tests look at."""

    def __init__(self, engine: EngineUnderTest) -> None:
        self.engine = engine
        self.clock = Clock()
        self.bus = MemoryBus()
        self.events = BusRecorder()
        self.bus.attach(self.events)
        self.presence = MemoryPresence()
        self.chat = Chat(
            engine.store,
            engine.log,
            self.bus,
            self.presence,
            token_ttl=TOKEN_TTL,
            hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
            clock=self.clock,
        )

    async def users(self, *names: str) -> None:
        for name in names:
            await self.chat.register(name, PASSWORD)

    async def room(self, owner: str, name: str, private: bool = False) -> None:
        await self.chat.create_room(owner, name, None, private)

    async def role(self, room: str, user: str) -> Role | None:
        return await self.engine.store.role(room, user)

    def removed(self) -> list[tuple[Any, ...]]:
        return [e for e in self.events.seen if e[0] == "removed"]


@pytest.fixture
def world(engine: EngineUnderTest) -> World:
    return World(engine)


@pytest.fixture
async def staffed(world: World) -> World:
    """Public `lobby` and private `secret`, both owned by `owner`; `mod` moderates both,
    `member` belongs to both; `outsider` belongs to neither."""
    await world.users("owner", "mod", "mod2", "member", "member2", "outsider")
    for name, private in (("lobby", False), ("secret", True)):
        await world.room("owner", name, private)
        for user in ("mod", "mod2", "member", "member2"):
            await world.chat.add_member("owner", name, user)
        await world.chat.promote("owner", name, "mod")
        await world.chat.promote("owner", name, "mod2")
    world.events.seen.clear()
    return world


# Accounts


async def test_register_keeps_the_name_as_given(world: World) -> None:
    assert await world.chat.register("Alice", PASSWORD) == {"name": "Alice"}


@pytest.mark.parametrize("again", ["Alice", "alice", "ALICE"])
async def test_register_of_a_name_taken_in_any_case_is_conflict(world: World, again: str) -> None:
    await world.chat.register("Alice", PASSWORD)
    with pytest.raises(Conflict):
        await world.chat.register(again, "another password")


@pytest.mark.parametrize("name", ["", "al ice", "x" * 33, "alice\n", "ålice", None, 5, ["a"]])
async def test_register_rejects_a_username_breaking_the_rules(world: World, name: Any) -> None:
    with pytest.raises(BadRequest):
        await world.chat.register(name, PASSWORD)


@pytest.mark.parametrize("password", ["x" * 7, "x" * 1025, "", None, 12345678])
async def test_register_rejects_a_password_breaking_the_rules(world: World, password: Any) -> None:
    with pytest.raises(BadRequest):
        await world.chat.register("alice", password)
    assert await world.engine.store.get_user("alice") is None


async def test_password_is_stored_only_as_an_argon2id_hash(world: World) -> None:
    await world.chat.register("alice", PASSWORD)
    stored = await world.engine.store.get_user("alice")
    assert stored is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash


async def test_login_in_any_case_gives_a_token_for_the_registered_name(world: World) -> None:
    await world.chat.register("Alice", PASSWORD)
    token, user = await world.chat.login("aLICE", PASSWORD)
    assert user == {"name": "Alice"}
    assert await world.chat.authenticate(token) == ("Alice", token_hash(token))


async def test_each_login_gives_a_new_token(world: World) -> None:
    await world.chat.register("alice", PASSWORD)
    first, _ = await world.chat.login("alice", PASSWORD)
    second, _ = await world.chat.login("alice", PASSWORD)
    assert first != second


async def test_tokens_are_stored_only_as_sha256_hashes(world: World) -> None:
    await world.chat.register("alice", PASSWORD)
    token, _ = await world.chat.login("alice", PASSWORD)
    now = world.chat.now_ms()
    assert await world.engine.store.token_session(token, now) is None
    found = await world.engine.store.token_session(token_hash(token), now)
    assert found is not None
    assert found.user == "alice"
    assert token not in (found.id, found.token_hash)


async def test_wrong_password_and_unknown_user_get_the_same_unauthorized(world: World) -> None:
    await world.chat.register("alice", PASSWORD)
    with pytest.raises(Unauthorized) as wrong_password:
        await world.chat.login("alice", "not the password")
    with pytest.raises(Unauthorized) as unknown_user:
        await world.chat.login("nobody", PASSWORD)
    with pytest.raises(Unauthorized) as impossible_name:
        await world.chat.login("no body!", PASSWORD)
    assert wrong_password.value.message == unknown_user.value.message
    assert impossible_name.value.message == unknown_user.value.message


@pytest.mark.parametrize(("name", "password"), [(None, PASSWORD), ("alice", None), (1, 2)])
async def test_login_with_non_string_credentials_is_bad_request(
    world: World, name: Any, password: Any
) -> None:
    with pytest.raises(BadRequest):
        await world.chat.login(name, password)


@pytest.mark.parametrize("token", ["", None, 42, "x" * 257, "never-issued"])
async def test_authenticate_rejects_missing_malformed_or_unknown_tokens(
    world: World, token: Any
) -> None:
    with pytest.raises(Unauthorized):
        await world.chat.authenticate(token)


async def test_token_works_until_its_ttl_then_stops(world: World) -> None:
    await world.chat.register("alice", PASSWORD)
    token, _ = await world.chat.login("alice", PASSWORD)
    world.clock.now += TOKEN_TTL - 1
    assert (await world.chat.authenticate(token))[0] == "alice"
    world.clock.now += 2
    with pytest.raises(Unauthorized):
        await world.chat.authenticate(token)


async def test_token_used_just_before_expiry_stops_at_expiry(world: World) -> None:
    """The authentication cache never outlives the token."""
    await world.chat.register("alice", PASSWORD)
    token, _ = await world.chat.login("alice", PASSWORD)
    world.clock.now += TOKEN_TTL - 5
    await world.chat.authenticate(token)
    world.clock.now += 6
    with pytest.raises(Unauthorized):
        await world.chat.authenticate(token)


async def test_logout_revokes_that_token_at_once_and_tells_every_node(world: World) -> None:
    await world.chat.register("alice", PASSWORD)
    token, _ = await world.chat.login("alice", PASSWORD)
    other, _ = await world.chat.login("alice", PASSWORD)
    _, hashed = await world.chat.authenticate(token)  # now cached

    await world.chat.logout(hashed)

    with pytest.raises(Unauthorized):
        await world.chat.authenticate(token)
    assert (await world.chat.authenticate(other))[0] == "alice"
    assert ("revoked", hashed) in world.events.seen


# Rooms


async def test_creator_owns_a_new_room(world: World) -> None:
    await world.users("Alice")
    view = await world.chat.create_room("Alice", "lobby", "hello", True)
    assert view == {
        "name": "lobby",
        "topic": "hello",
        "private": True,
        "owner": "Alice",
        "moderators": [],
        "members": ["Alice"],
        "last_seq": 0,
        "created_at": world.chat.now_ms(),
        "archived": False,
    }
    assert await world.role("lobby", "alice") is Role.OWNER


async def test_room_topic_and_privacy_default_to_empty_and_public(world: World) -> None:
    await world.users("alice")
    view = await world.chat.create_room("alice", "lobby", None, None)
    assert (view["topic"], view["private"]) == ("", False)


async def test_room_name_taken_is_conflict(world: World) -> None:
    await world.users("alice", "bob")
    await world.room("alice", "lobby")
    with pytest.raises(Conflict):
        await world.chat.create_room("bob", "lobby", None, None)


@pytest.mark.parametrize(
    ("name", "topic", "private"),
    [
        ("Lobby", None, None),
        ("abc\n", None, None),
        ("", None, None),
        ("a" * 65, None, None),
        (None, None, None),
        ("lobby", 5, None),
        ("lobby", "x" * 1001, None),
        ("lobby", None, "yes"),
        ("lobby", None, 1),
    ],
    ids=repr,
)
async def test_create_room_rejects_bad_input(
    world: World, name: Any, topic: Any, private: Any
) -> None:
    await world.users("alice")
    with pytest.raises(BadRequest):
        await world.chat.create_room("alice", name, topic, private)


async def test_joining_a_public_room_makes_the_user_a_member(world: World) -> None:
    await world.users("alice", "bob")
    await world.room("alice", "lobby")
    await world.chat.join("bob", "lobby")
    assert await world.role("lobby", "bob") is Role.MEMBER
    assert (await world.chat.get_room("bob", "lobby"))["members"] == ["alice", "bob"]
    await world.chat.join("bob", "lobby")  # again: nothing changes
    assert await world.role("lobby", "bob") is Role.MEMBER


async def test_public_rooms_are_readable_by_every_user(world: World) -> None:
    await world.users("alice", "bob")
    await world.room("alice", "lobby")
    await world.chat.send("alice", "lobby", "m1", "hi")
    assert (await world.chat.get_room("bob", "lobby"))["last_seq"] == 1
    messages, more = await world.chat.history("bob", "lobby", None, None, 50)
    assert ([m.body for m in messages], more) == (["hi"], False)
    assert [r["name"] for r in await world.chat.list_rooms("bob")] == ["lobby"]


async def test_a_user_may_add_only_themselves_to_a_public_room(staffed: World) -> None:
    chat = staffed.chat
    await chat.add_member("outsider", "lobby", "outsider")
    assert await staffed.role("lobby", "outsider") is Role.MEMBER
    await staffed.users("newbie")
    with pytest.raises(Forbidden):
        await chat.add_member("member", "lobby", "newbie")
    assert await staffed.role("lobby", "newbie") is None


@pytest.mark.parametrize("actor", ["owner", "mod"])
async def test_staff_may_add_anyone_to_any_room(staffed: World, actor: str) -> None:
    for room in ("lobby", "secret"):
        await staffed.chat.add_member(actor, room, "outsider")
        assert await staffed.role(room, "outsider") is Role.MEMBER


async def test_adding_an_existing_member_is_a_no_op(staffed: World) -> None:
    await staffed.chat.add_member("owner", "lobby", "mod")
    assert await staffed.role("lobby", "mod") is Role.MODERATOR


async def test_adding_an_unknown_user_is_not_found(staffed: World) -> None:
    with pytest.raises(NotFound):
        await staffed.chat.add_member("owner", "lobby", "ghost")


# Private rooms are invisible to outsiders


def outsider_calls(room: str) -> dict[str, Callable[[Chat], Awaitable[Any]]]:
    """Every rule a non-member might try on a room, by name."""
    return {
        "get_room": lambda c: c.get_room("outsider", room),
        "join": lambda c: c.join("outsider", room),
        "history": lambda c: c.history("outsider", room, None, None, 50),
        "online": lambda c: c.online("outsider", room),
        "add_self": lambda c: c.add_member("outsider", room, "outsider"),
        "add_other": lambda c: c.add_member("outsider", room, "member"),
        "leave": lambda c: c.remove_member("outsider", room, "outsider"),
        "kick": lambda c: c.remove_member("outsider", room, "member"),
        "ban": lambda c: c.ban("outsider", room, "member"),
        "unban": lambda c: c.unban("outsider", room, "member"),
        "bans": lambda c: c.bans("outsider", room),
        "promote": lambda c: c.promote("outsider", room, "member"),
        "demote": lambda c: c.demote("outsider", room, "mod"),
    }


async def not_found_message(call: Awaitable[Any], room: str) -> str:
    with pytest.raises(NotFound) as info:
        await call
    return info.value.message.replace(room, "<room>")


@pytest.mark.parametrize("call", sorted(outsider_calls("x")))
async def test_private_room_answers_an_outsider_exactly_like_a_missing_room(
    staffed: World, call: str
) -> None:
    hidden = await not_found_message(outsider_calls("secret")[call](staffed.chat), "secret")
    missing = await not_found_message(outsider_calls("nowhere")[call](staffed.chat), "nowhere")
    assert hidden == missing
    assert await staffed.role("secret", "outsider") is None
    assert await staffed.role("secret", "member") is Role.MEMBER


async def test_private_room_is_not_listed_for_an_outsider(staffed: World) -> None:
    assert [r["name"] for r in await staffed.chat.list_rooms("outsider")] == ["lobby"]
    assert (await staffed.chat.me("outsider"))["rooms"] == []


async def test_invited_user_sees_and_joins_a_private_room(staffed: World) -> None:
    await staffed.chat.add_member("mod", "secret", "outsider")
    assert (await staffed.chat.get_room("outsider", "secret"))["private"] is True
    assert "secret" in [r["name"] for r in await staffed.chat.list_rooms("outsider")]
    assert (await staffed.chat.join("outsider", "secret")).name == "secret"


async def test_plain_member_cannot_invite_into_a_private_room(staffed: World) -> None:
    with pytest.raises(Forbidden):
        await staffed.chat.add_member("member", "secret", "outsider")
    assert await staffed.role("secret", "outsider") is None


# Roles: kicking and leaving


@pytest.mark.parametrize("actor", ["owner", "mod"])
async def test_staff_can_kick_a_member(staffed: World, actor: str) -> None:
    await staffed.chat.remove_member(actor, "lobby", "member")
    assert await staffed.role("lobby", "member") is None
    assert staffed.removed() == [("removed", "lobby", "member", "kicked")]


@pytest.mark.parametrize("target", ["owner", "mod2"])
async def test_moderator_cannot_kick_the_owner_or_another_moderator(
    staffed: World, target: str
) -> None:
    with pytest.raises(Forbidden):
        await staffed.chat.remove_member("mod", "lobby", target)
    assert await staffed.role("lobby", target) in (Role.OWNER, Role.MODERATOR)
    assert staffed.removed() == []


async def test_owner_can_kick_a_moderator(staffed: World) -> None:
    await staffed.chat.remove_member("owner", "lobby", "mod")
    assert await staffed.role("lobby", "mod") is None


async def test_plain_member_cannot_kick(staffed: World) -> None:
    with pytest.raises(Forbidden):
        await staffed.chat.remove_member("member", "lobby", "member2")
    assert await staffed.role("lobby", "member2") is Role.MEMBER


@pytest.mark.parametrize("user", ["member", "mod"])
async def test_members_and_moderators_can_leave(staffed: World, user: str) -> None:
    await staffed.chat.remove_member(user, "secret", user)
    assert await staffed.role("secret", user) is None
    assert staffed.removed() == [("removed", "secret", user, "left")]


async def test_owner_can_neither_leave_nor_be_removed(staffed: World) -> None:
    with pytest.raises(Forbidden):
        await staffed.chat.remove_member("owner", "lobby", "owner")
    assert await staffed.role("lobby", "owner") is Role.OWNER


async def test_removing_a_non_member_is_a_silent_no_op(staffed: World) -> None:
    await staffed.chat.remove_member("owner", "lobby", "outsider")
    assert staffed.removed() == []


async def test_kicking_an_unknown_user_is_not_found(staffed: World) -> None:
    with pytest.raises(NotFound):
        await staffed.chat.remove_member("owner", "lobby", "ghost")


# Roles: promoting


async def test_owner_promotes_and_demotes(staffed: World) -> None:
    await staffed.chat.promote("owner", "lobby", "member")
    assert "member" in (await staffed.chat.get_room("owner", "lobby"))["moderators"]
    await staffed.chat.demote("owner", "lobby", "member")
    assert await staffed.role("lobby", "member") is Role.MEMBER
    assert (await staffed.chat.get_room("owner", "lobby"))["moderators"] == ["mod", "mod2"]


@pytest.mark.parametrize("actor", ["mod", "member"])
async def test_only_the_owner_promotes_or_demotes(staffed: World, actor: str) -> None:
    with pytest.raises(Forbidden):
        await staffed.chat.promote(actor, "lobby", "member2")
    with pytest.raises(Forbidden):
        await staffed.chat.demote(actor, "lobby", "mod2")
    assert await staffed.role("lobby", "member2") is Role.MEMBER
    assert await staffed.role("lobby", "mod2") is Role.MODERATOR


async def test_non_staff_outsider_of_a_public_room_cannot_promote(staffed: World) -> None:
    with pytest.raises(Forbidden):
        await staffed.chat.promote("outsider", "lobby", "member")


async def test_promoting_a_non_member_is_not_found(staffed: World) -> None:
    with pytest.raises(NotFound):
        await staffed.chat.promote("owner", "lobby", "outsider")
    assert await staffed.role("lobby", "outsider") is None


async def test_the_owner_role_cannot_change(staffed: World) -> None:
    with pytest.raises(Forbidden):
        await staffed.chat.demote("owner", "lobby", "owner")
    assert await staffed.role("lobby", "owner") is Role.OWNER


# Bans


@pytest.mark.parametrize("actor", ["owner", "mod"])
async def test_staff_ban_removes_the_member_and_tells_every_node(
    staffed: World, actor: str
) -> None:
    await staffed.chat.ban(actor, "lobby", "member")
    assert await staffed.role("lobby", "member") is None
    assert await staffed.chat.bans(actor, "lobby") == ["member"]
    assert staffed.removed() == [("removed", "lobby", "member", "banned")]


def banned_calls(room: str) -> dict[str, Callable[[Chat], Awaitable[Any]]]:
    return {
        "get_room": lambda c: c.get_room("member", room),
        "join": lambda c: c.join("member", room),
        "history": lambda c: c.history("member", room, None, None, 50),
        "online": lambda c: c.online("member", room),
        "add_self": lambda c: c.add_member("member", room, "member"),
    }


@pytest.mark.parametrize("call", sorted(banned_calls("x")))
async def test_banned_user_is_forbidden_on_a_public_room(staffed: World, call: str) -> None:
    await staffed.chat.ban("mod", "lobby", "member")
    with pytest.raises(Forbidden):
        await banned_calls("lobby")[call](staffed.chat)
    assert await staffed.role("lobby", "member") is None


@pytest.mark.parametrize("call", sorted(banned_calls("x")))
async def test_banned_user_sees_a_private_room_as_missing(staffed: World, call: str) -> None:
    await staffed.chat.ban("mod", "secret", "member")
    hidden = await not_found_message(banned_calls("secret")[call](staffed.chat), "secret")
    missing = await not_found_message(banned_calls("nowhere")[call](staffed.chat), "nowhere")
    assert hidden == missing


async def test_banned_public_room_is_not_listed(staffed: World) -> None:
    await staffed.chat.ban("mod", "lobby", "member")
    await staffed.chat.ban("mod", "secret", "member")
    assert await staffed.chat.list_rooms("member") == []
    assert (await staffed.chat.me("member"))["rooms"] == []


async def test_banned_user_cannot_be_added_until_unbanned(staffed: World) -> None:
    await staffed.chat.ban("mod", "lobby", "member")
    with pytest.raises(Forbidden):
        await staffed.chat.add_member("owner", "lobby", "member")
    await staffed.chat.unban("mod", "lobby", "member")
    assert await staffed.role("lobby", "member") is None, "unban does not restore membership"
    await staffed.chat.join("member", "lobby")
    assert await staffed.role("lobby", "member") is Role.MEMBER


async def test_ban_of_a_non_member_keeps_them_out_of_a_public_room(staffed: World) -> None:
    await staffed.chat.ban("mod", "lobby", "outsider")
    with pytest.raises(Forbidden):
        await staffed.chat.join("outsider", "lobby")


@pytest.mark.parametrize("target", ["owner", "mod2"])
async def test_moderator_cannot_ban_the_owner_or_another_moderator(
    staffed: World, target: str
) -> None:
    with pytest.raises(Forbidden):
        await staffed.chat.ban("mod", "lobby", target)
    assert await staffed.chat.bans("owner", "lobby") == []


async def test_owner_can_ban_a_moderator(staffed: World) -> None:
    await staffed.chat.ban("owner", "lobby", "mod")
    assert await staffed.role("lobby", "mod") is None


async def test_nobody_can_ban_themselves(staffed: World) -> None:
    with pytest.raises(Forbidden):
        await staffed.chat.ban("mod", "lobby", "mod")


@pytest.mark.parametrize("actor", ["member", "outsider"])
async def test_non_staff_cannot_ban_unban_or_list_bans(staffed: World, actor: str) -> None:
    await staffed.chat.ban("owner", "lobby", "member2")
    with pytest.raises(Forbidden):
        await staffed.chat.ban(actor, "lobby", "mod")
    with pytest.raises(Forbidden):
        await staffed.chat.unban(actor, "lobby", "member2")
    with pytest.raises(Forbidden):
        await staffed.chat.bans(actor, "lobby")
    assert await staffed.chat.bans("owner", "lobby") == ["member2"]


# Messages, history and presence


async def test_send_appends_to_the_room_log(staffed: World) -> None:
    first = await staffed.chat.send("member", "lobby", "m1", "hello")
    again = await staffed.chat.send("member", "lobby", "m1", "hello")
    assert (first.created, first.message.seq, first.message.sender) == (True, 1, "member")
    assert (again.created, again.message) == (False, first.message)
    with pytest.raises(Conflict):
        await staffed.chat.send("member", "lobby", "m1", "changed")


async def test_history_pages_through_the_log(staffed: World) -> None:
    for i in range(1, 8):
        await staffed.chat.send("member", "lobby", f"m{i}", f"#{i}")
    page, more = await staffed.chat.history("member2", "lobby", None, None, 3)
    assert ([m.seq for m in page], more) == ([5, 6, 7], True)
    page, more = await staffed.chat.history("member2", "lobby", 5, None, 3)
    assert ([m.seq for m in page], more) == ([2, 3, 4], True)
    page, more = await staffed.chat.history("member2", "lobby", None, 4, 50)
    assert ([m.seq for m in page], more) == ([5, 6, 7], False)


@pytest.mark.parametrize("field", ["before", "after"])
async def test_history_frame_with_a_huge_seq_is_answered_or_rejected_as_bad_request(
    staffed: World, field: str
) -> None:
    """A seq the parser accepts must not become an `internal` error further in."""
    await staffed.chat.send("member", "lobby", "m1", "hello")
    data = f'{{"type": "history", "room": "lobby", "{field}": {2**64}}}'
    try:
        frame = parse_frame(data, 4000)
    except FrameError as exc:
        assert exc.error.code == "bad_request"
        return
    assert isinstance(frame, History)
    page, _ = await staffed.chat.history(
        "member", frame.room, frame.before, frame.after, frame.limit
    )
    assert [m.seq for m in page] == ([1] if field == "before" else [])


async def test_online_lists_users_present_in_a_room_the_caller_may_see(staffed: World) -> None:
    await staffed.presence.add("secret", "mod", "s1")
    await staffed.presence.add("secret", "member", "s2")
    assert await staffed.chat.online("member2", "secret") == ["member", "mod"]
    with pytest.raises(NotFound):
        await staffed.chat.online("outsider", "secret")


async def test_me_lists_the_rooms_the_user_belongs_to(staffed: World) -> None:
    me = await staffed.chat.me("member")
    assert me["user"] == {"name": "member"}
    assert [r["name"] for r in me["rooms"]] == ["lobby", "secret"]


# Archiving and deleting rooms, deleting accounts


class CountingStore:
    """The engine's store, noting the name of every call made through it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return await method(*args, **kwargs)

        return counted


async def test_sends_read_nothing_from_the_store_whether_taken_or_refused_as_archived(
    world: World,
) -> None:
    counting = CountingStore(world.engine.store)
    world.chat.store = counting
    await world.users("owner", "member")
    await world.room("owner", "lobby")
    await world.chat.join("member", "lobby")
    counting.calls.clear()
    for i in range(5):
        await world.chat.send("member", "lobby", f"m{i}", "hello")
    assert counting.calls == []
    await world.chat.change_room("owner", "lobby", {"archived": True})
    counting.calls.clear()
    with pytest.raises(Forbidden, match="#lobby is archived: it is read-only"):
        await world.chat.send("member", "lobby", "m9", "hello")
    assert counting.calls == []
    await world.chat.change_room("owner", "lobby", {"archived": False})
    assert (await world.chat.send("member", "lobby", "m9", "hello")).message.seq == 6


async def test_a_join_refreshes_what_the_node_knows_of_an_archived_room(world: World) -> None:
    # Archived while this node heard nothing of it (say, on another node before any of
    # this node's connections joined): the record the join loads says so.
    await world.users("owner")
    await world.room("owner", "lobby")
    await world.engine.store.set_archived("lobby", True)
    await world.chat.join("owner", "lobby")
    with pytest.raises(Forbidden):
        await world.chat.send("owner", "lobby", "m1", "hello")
    await world.engine.store.set_archived("lobby", False)
    await world.chat.join("owner", "lobby")
    assert (await world.chat.send("owner", "lobby", "m1", "hello")).created


async def test_only_the_owner_archives_or_deletes_and_others_learn_nothing_of_private_rooms(
    staffed: World,
) -> None:
    chat = staffed.chat
    for user in ("mod", "member"):
        with pytest.raises(Forbidden):
            await chat.change_room(user, "lobby", {"archived": True})
        with pytest.raises(Forbidden):
            await chat.delete_room(user, "lobby")
    with pytest.raises(NotFound):
        await chat.change_room("outsider", "secret", {"archived": True})
    with pytest.raises(NotFound):
        await chat.delete_room("outsider", "secret")
    with pytest.raises(BadRequest, match="archived is true"):
        await chat.change_room("owner", "lobby", {"archived": "yes"})
    room = await chat.change_room("owner", "lobby", {"archived": True})
    assert room["archived"] is True
    assert staffed.events.seen[-1] == ("room_changed", "lobby", "archived")


async def test_a_deleted_room_is_redacted_not_found_and_its_name_held_for_the_grace(
    staffed: World,
) -> None:
    chat = staffed.chat
    await chat.join("member", "lobby")
    await chat.send("member", "lobby", "m1", "secret words")
    await chat.delete_room("owner", "lobby")
    assert staffed.events.seen[-1] == ("room_changed", "lobby", "deleted")
    for user in ("owner", "member", "outsider"):
        with pytest.raises(NotFound):
            await chat.get_room(user, "lobby")
    with pytest.raises(NotFound):
        await chat.send("member", "lobby", "m2", "too late")
    (stored,) = await staffed.engine.log.read("lobby", 0, 10)
    assert (stored.deleted, stored.body, stored.sender) == (True, "", "member")
    # 1_700_000_000 s + 7 days is 2023-11-21T22:13:20Z.
    with pytest.raises(Conflict) as held:
        await chat.create_room("outsider", "lobby", None, None)
    assert (
        held.value.message
        == "#lobby was deleted; the name is free again after 2023-11-21T22:13:20Z"
    )
    staffed.clock.now += 7 * 24 * 3600 - 1
    with pytest.raises(Conflict):
        await chat.create_room("outsider", "lobby", None, None)
    staffed.clock.now += 1
    room = await chat.create_room("outsider", "lobby", None, None)
    assert (room["owner"], room["members"], room["last_seq"]) == ("outsider", ["outsider"], 0)
    await chat.join("outsider", "lobby")
    assert (await chat.send("outsider", "lobby", "m1", "new")).message.seq == 1


async def test_account_deletion_needs_the_password_and_revokes_every_token(world: World) -> None:
    await world.users("owner", "bob")
    await world.room("bob", "bobs")
    token, _ = await world.chat.login("bob", PASSWORD)
    other, _ = await world.chat.login("bob", PASSWORD)
    with pytest.raises(Unauthorized):
        await world.chat.delete_account("bob", {"password": "not the password"})
    with pytest.raises(BadRequest):
        await world.chat.delete_account("bob", {"password": 12345678})
    assert await world.chat.authenticate(token)
    await world.chat.delete_account("bob", {"password": PASSWORD})
    revoked = [e[1] for e in world.events.seen if e[0] == "revoked"]
    assert sorted(revoked) == sorted([token_hash(token), token_hash(other)])
    for t in (token, other):
        with pytest.raises(Unauthorized):
            await world.chat.authenticate(t)
    with pytest.raises(Unauthorized):
        await world.chat.login("bob", PASSWORD)
    with pytest.raises(Conflict, match="deleted account"):
        await world.chat.register("Bob", PASSWORD)
    kept = await world.chat.get_room("owner", "bobs")
    assert kept["owner"] == "bob" and kept["members"] == []
