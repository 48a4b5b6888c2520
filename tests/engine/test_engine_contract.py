"""The Store and Log contract, run against every engine (see `support.engine_handles.ENGINES`)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from support.engine_handles import EngineUnderTest, room, user

from hubbub.engine.base import Appended, LoginSession, Message, Role, Room
from hubbub.protocol.errors import Conflict, NotFound


async def fill(engine: EngineUnderTest, name: str, count: int, sender: str = "alice") -> None:
    for i in range(1, count + 1):
        await engine.log.append(name, sender, f"m{i}", f"body {i}")


def seqs(messages: list[Message]) -> list[int]:
    return [m.seq for m in messages]


# Users


async def test_created_user_is_found_in_any_case_with_its_registered_case(
    engine: EngineUnderTest,
) -> None:
    created = await engine.store.create_user("Alice", "h1", 1)
    assert (created.name, created.password_hash) == ("Alice", "h1")
    for spelling in ("Alice", "alice", "ALICE"):
        found = await engine.store.get_user(spelling)
        assert found is not None
        assert (found.name, found.password_hash) == ("Alice", "h1")


@pytest.mark.parametrize("again", ["Alice", "alice", "ALICE", "aLiCe"])
async def test_username_taken_in_any_case_is_a_conflict(
    engine: EngineUnderTest, again: str
) -> None:
    await engine.store.create_user("Alice", "h1", 1)
    with pytest.raises(Conflict):
        await engine.store.create_user(again, "h2", 2)
    found = await engine.store.get_user("alice")
    assert found is not None
    assert (found.name, found.password_hash) == ("Alice", "h1")


async def test_unknown_user_is_none(engine: EngineUnderTest) -> None:
    assert await engine.store.get_user("nobody") is None


# Tokens and sessions


def who(session: LoginSession | None) -> tuple[str, int] | None:
    return (session.user, session.expires_at) if session else None


async def test_token_names_its_user_and_expiry_until_it_expires(engine: EngineUnderTest) -> None:
    await engine.store.create_user("Alice", "h", 1)
    await engine.store.create_token("t1", "alice", now=1_000, expires_at=2_000, session_id="s-t1")
    assert who(await engine.store.token_session("t1", 1_000)) == ("Alice", 2_000)
    assert who(await engine.store.token_session("t1", 1_999)) == ("Alice", 2_000)
    assert who(await engine.store.token_session("t1", 2_001)) is None
    assert who(await engine.store.token_session("t1", 99_999)) is None


async def test_deleted_token_stops_working_and_others_do_not(engine: EngineUnderTest) -> None:
    await engine.store.create_user("alice", "h", 1)
    await engine.store.create_token("t1", "alice", now=1, expires_at=10**12, session_id="s-t1")
    await engine.store.create_token("t2", "alice", now=1, expires_at=10**12, session_id="s-t2")
    await engine.store.delete_token("t1")
    assert who(await engine.store.token_session("t1", 2)) is None
    assert who(await engine.store.token_session("t2", 2)) == ("alice", 10**12)


async def test_unknown_token_is_none(engine: EngineUnderTest) -> None:
    assert who(await engine.store.token_session("never-issued", 1)) is None
    await engine.store.delete_token("never-issued")  # deleting it is harmless


async def test_sessions_list_touch_and_revoke_per_user(engine: EngineUnderTest) -> None:
    await engine.store.create_user("Alice", "h", 1)
    await engine.store.create_user("bob", "h", 1)
    await engine.store.create_token(
        "t1", "alice", 10, 10**12, session_id="s1", user_agent="ua/1", address="10.0.0.1"
    )
    await engine.store.create_token("t2", "alice", 20, 10**12, session_id="s2")
    await engine.store.create_token("t3", "bob", 30, 10**12, session_id="s3")
    await engine.store.touch_token("t1", 500)
    listed = await engine.store.sessions("ALICE", 600)
    assert [s.id for s in listed] == ["s2", "s1"]  # the newest first
    assert listed[1] == LoginSession("s1", "t1", "Alice", 10, 500, 10**12, "ua/1", "10.0.0.1")
    assert listed[0].last_used_at == 20  # a new token counts as used when issued
    assert await engine.store.delete_session("alice", "s3") is None  # bob's: not alice's
    assert await engine.store.delete_session("alice", "s1") == "t1"
    assert await engine.store.delete_session("alice", "s1") is None
    await engine.store.create_token("t4", "alice", 40, 10**12, session_id="s4")
    assert sorted(await engine.store.delete_sessions("alice", keep="t4")) == ["t2"]
    assert [s.id for s in await engine.store.sessions("alice", 600)] == ["s4"]
    assert await engine.store.delete_sessions("alice") == ["t4"]
    assert [s.id for s in await engine.store.sessions("bob", 600)] == ["s3"]


async def test_expired_sessions_are_not_listed_and_go_at_the_next_login(
    engine: EngineUnderTest,
) -> None:
    await engine.store.create_user("alice", "h", 1)
    await engine.store.create_token("t1", "alice", 1, 100, session_id="s1")
    await engine.store.create_token("t2", "alice", 1, 10**12, session_id="s2")
    assert [s.id for s in await engine.store.sessions("alice", 200)] == ["s2"]
    await engine.store.create_token("t3", "alice", 300, 10**12, session_id="s3")
    assert sorted(await engine.store.delete_sessions("alice")) == ["t2", "t3"]


async def test_password_hash_can_be_replaced(engine: EngineUnderTest) -> None:
    await engine.store.create_user("Alice", "old", 1)
    await engine.store.set_password_hash("alice", "new")
    found = await engine.store.get_user("alice")
    assert found is not None and found.password_hash == "new"


# Rooms and memberships


async def test_created_room_reads_back_and_its_creator_is_its_owner(
    engine: EngineUnderTest,
) -> None:
    await engine.store.create_user("Alice", "h", 1)
    created = await room(engine, "lobby", owner="Alice", private=True)
    assert await engine.store.get_room("lobby") == created
    assert await engine.store.role("lobby", "alice") is Role.OWNER
    assert await engine.store.members("lobby") == [("Alice", Role.OWNER)]


async def test_room_name_taken_is_a_conflict_and_the_room_is_unchanged(
    engine: EngineUnderTest,
) -> None:
    created = await room(engine, "lobby", owner="alice")
    await user(engine, "bob")
    with pytest.raises(Conflict):
        await engine.store.create_room(Room("lobby", "mine now", True, "bob", 9))
    assert await engine.store.get_room("lobby") == created
    assert await engine.store.role("lobby", "bob") is None


async def test_unknown_room_is_none(engine: EngineUnderTest) -> None:
    assert await engine.store.get_room("nowhere") is None
    assert await engine.store.members("nowhere") == []
    assert await engine.store.role("nowhere", "alice") is None


async def test_list_rooms_has_public_rooms_and_my_private_ones_by_name(
    engine: EngineUnderTest,
) -> None:
    await room(engine, "zeta", owner="alice")
    await room(engine, "alpha", owner="bob")
    await room(engine, "secret", owner="bob", private=True)
    await room(engine, "mine", owner="alice", private=True)
    await room(engine, "invited", owner="bob", private=True)
    await engine.store.add_member("invited", "alice", 8)

    assert [r.name for r in await engine.store.list_rooms("Alice")] == [
        "alpha",
        "invited",
        "mine",
        "zeta",
    ]
    assert [r.name for r in await engine.store.member_rooms("alice")] == [
        "invited",
        "mine",
        "zeta",
    ]
    assert [r.name for r in await engine.store.list_rooms("carol")] == ["alpha", "zeta"]
    assert await engine.store.member_rooms("carol") == []


async def test_adding_a_member_twice_adds_once(engine: EngineUnderTest) -> None:
    await room(engine, "lobby")
    await user(engine, "Bob")
    assert await engine.store.add_member("lobby", "Bob", 8) is True
    assert await engine.store.add_member("lobby", "BOB", 9) is False
    assert await engine.store.role("lobby", "bob") is Role.MEMBER
    assert sorted(await engine.store.members("lobby")) == [
        ("Bob", Role.MEMBER),
        ("alice", Role.OWNER),
    ]


async def test_adding_the_owner_as_member_keeps_the_owner_role(engine: EngineUnderTest) -> None:
    await room(engine, "lobby")
    assert await engine.store.add_member("lobby", "alice", 8) is False
    assert await engine.store.role("lobby", "alice") is Role.OWNER


async def test_set_member_promotes_and_demotes(engine: EngineUnderTest) -> None:
    await room(engine, "lobby")
    await user(engine, "bob")
    await engine.store.add_member("lobby", "bob", 8)
    await engine.store.set_member("lobby", "bob", Role.MODERATOR, 9)
    assert await engine.store.role("lobby", "bob") is Role.MODERATOR
    assert dict(await engine.store.members("lobby"))["bob"] is Role.MODERATOR
    await engine.store.set_member("lobby", "BOB", Role.MEMBER, 10)
    assert await engine.store.role("lobby", "bob") is Role.MEMBER


async def test_removing_a_member_removes_once(engine: EngineUnderTest) -> None:
    await room(engine, "lobby")
    await user(engine, "bob")
    await engine.store.add_member("lobby", "bob", 8)
    assert await engine.store.remove_member("lobby", "Bob") is True
    assert await engine.store.remove_member("lobby", "bob") is False
    assert await engine.store.role("lobby", "bob") is None
    assert await engine.store.members("lobby") == [("alice", Role.OWNER)]


async def test_memberships_are_per_room(engine: EngineUnderTest) -> None:
    await room(engine, "lobby")
    await room(engine, "dev")
    await user(engine, "bob")
    await engine.store.add_member("lobby", "bob", 8)
    assert await engine.store.role("dev", "bob") is None
    await engine.store.remove_member("dev", "bob")
    assert await engine.store.role("lobby", "bob") is Role.MEMBER


# Bans


async def test_ban_removes_the_membership_and_is_listed(engine: EngineUnderTest) -> None:
    await room(engine, "lobby")
    await user(engine, "Bob")
    await engine.store.add_member("lobby", "bob", 8)
    await engine.store.ban("lobby", "bob", "alice", 9)
    assert await engine.store.is_banned("lobby", "BOB") is True
    assert await engine.store.role("lobby", "bob") is None
    assert await engine.store.bans("lobby") == ["Bob"]


async def test_banning_twice_or_a_non_member_is_fine(engine: EngineUnderTest) -> None:
    await room(engine, "lobby")
    await user(engine, "bob")
    await engine.store.ban("lobby", "bob", "alice", 9)
    await engine.store.ban("lobby", "bob", "alice", 10)
    assert await engine.store.bans("lobby") == ["bob"]


async def test_unban_lifts_the_ban_once_without_restoring_membership(
    engine: EngineUnderTest,
) -> None:
    await room(engine, "lobby")
    await user(engine, "bob")
    await engine.store.add_member("lobby", "bob", 8)
    await engine.store.ban("lobby", "bob", "alice", 9)
    assert await engine.store.unban("lobby", "bob") is True
    assert await engine.store.unban("lobby", "bob") is False
    assert await engine.store.is_banned("lobby", "bob") is False
    assert await engine.store.role("lobby", "bob") is None
    assert await engine.store.bans("lobby") == []


async def test_bans_are_per_room(engine: EngineUnderTest) -> None:
    await room(engine, "lobby")
    await room(engine, "dev")
    await user(engine, "bob")
    await engine.store.ban("lobby", "bob", "alice", 9)
    assert await engine.store.is_banned("dev", "bob") is False
    assert await engine.store.bans("dev") == []


# Archiving and deleting rooms; deleting accounts


async def test_an_archived_room_leaves_the_lists_but_stays_readable_until_unarchived(
    engine: EngineUnderTest,
) -> None:
    await room(engine, "lobby", owner="alice")
    await room(engine, "other", owner="alice")
    await engine.store.set_archived("lobby", True)
    archived = await engine.store.get_room("lobby")
    assert archived is not None and archived.archived
    assert [r.name for r in await engine.store.list_rooms("alice")] == ["other"]
    assert [r.name for r in await engine.store.list_rooms("alice", archived=True)] == ["lobby"]
    assert [r.name for r in await engine.store.member_rooms("alice")] == ["other"]
    assert await engine.store.role("lobby", "alice") is Role.OWNER
    await engine.store.set_archived("lobby", False)
    restored = await engine.store.get_room("lobby")
    assert restored is not None and not restored.archived
    assert [r.name for r in await engine.store.member_rooms("alice")] == ["lobby", "other"]


async def test_a_deleted_room_is_gone_with_its_members_and_bans_but_holds_its_name(
    engine: EngineUnderTest,
) -> None:
    await room(engine, "lobby", owner="alice")
    await user(engine, "bob")
    await user(engine, "carol")
    await engine.store.add_member("lobby", "bob", 8)
    await engine.store.ban("lobby", "carol", "alice", 9)
    assert await engine.store.deleted_at("lobby") is None
    await engine.store.delete_room("lobby", 1_000)
    assert await engine.store.get_room("lobby") is None
    assert await engine.store.list_rooms("alice") == []
    assert await engine.store.list_rooms("alice", archived=True) == []
    assert await engine.store.member_rooms("bob") == []
    assert await engine.store.members("lobby") == []
    assert await engine.store.bans("lobby") == []
    assert await engine.store.deleted_at("lobby") == 1_000
    with pytest.raises(Conflict):
        await engine.store.create_room(Room("lobby", "", False, "bob", 2_000))


async def test_redacting_keeps_tombstones_and_takes_appends_called_before_it(
    engine: EngineUnderTest,
) -> None:
    await room(engine, "lobby")
    await fill(engine, "lobby", 3)
    # Appends under way when the redaction is called are in it, however they interleave,
    # unless the engine refuses them (Redis: the room is marked deleted before the rewrite).
    racing = [
        asyncio.ensure_future(engine.log.append("lobby", "bob", f"r{i}", "late")) for i in range(5)
    ]
    await asyncio.sleep(0)  # one turn of the loop: each append has started
    await engine.log.redact("lobby")
    outcomes = await asyncio.gather(*racing, return_exceptions=True)
    assert all(isinstance(o, (Appended, NotFound)) for o in outcomes), outcomes
    stored = await engine.log.read("lobby", 0, 100)
    taken = sum(isinstance(o, Appended) for o in outcomes)
    assert seqs(stored) == list(range(1, 4 + taken))
    assert all(m.deleted and m.body == "" for m in stored)
    assert stored[0].view() == {
        "room": "lobby",
        "seq": 1,
        "id": "m1",
        "from": "alice",
        "ts": stored[0].ts,
        "deleted": True,
    }
    page, more = await engine.log.page("lobby", None, 1, 1)
    assert seqs(page) == [2] and more and all(m.deleted for m in page)


async def test_a_purged_room_frees_its_name_and_a_new_room_starts_at_seq_1(
    engine: EngineUnderTest,
) -> None:
    await room(engine, "lobby")
    await fill(engine, "lobby", 4)
    await engine.store.delete_room("lobby", 1_000)
    await engine.log.redact("lobby")
    await engine.log.purge("lobby")
    await engine.store.purge_room("lobby")
    assert await engine.store.deleted_at("lobby") is None
    await room(engine, "lobby", owner="bob")
    assert await engine.log.last_seq("lobby") == 0
    appended = await engine.log.append("lobby", "bob", "m1", "fresh")
    assert (appended.message.seq, appended.created) == (1, True)
    assert [m.body for m in await engine.log.read("lobby", 0, 10)] == ["fresh"]


async def test_purging_leaves_a_live_room_alone(engine: EngineUnderTest) -> None:
    created = await room(engine, "lobby")
    await engine.store.purge_room("lobby")
    assert await engine.store.get_room("lobby") == created


async def test_a_deleted_account_loses_its_tokens_and_rooms_but_keeps_its_name(
    engine: EngineUnderTest,
) -> None:
    await room(engine, "lobby", owner="alice")
    await room(engine, "mine", owner="Bob")
    await engine.store.add_member("lobby", "bob", 8)
    await engine.store.create_token("t1", "bob", now=1, expires_at=10**12, session_id="s1")
    await engine.store.create_token("t2", "bob", now=1, expires_at=10**12, session_id="s2")
    await engine.log.append("lobby", "Bob", "m1", "hello")
    assert sorted(await engine.store.delete_user("BOB", 5)) == ["t1", "t2"]
    assert await engine.store.get_user("bob") is None
    assert await engine.store.token_session("t1", 2) is None
    assert await engine.store.member_rooms("bob") == []
    assert await engine.store.members("lobby") == [("alice", Role.OWNER)]
    kept = await engine.store.get_room("mine")  # the rooms it owned stay
    assert kept is not None and kept.owner == "Bob"
    assert [m.sender for m in await engine.log.read("lobby", 0, 1)] == ["Bob"]
    with pytest.raises(Conflict, match="deleted account"):
        await engine.store.create_user("bob", "h", 9)


# The log: sequence numbers


async def test_seqs_start_at_1_and_are_gapless_per_room(engine: EngineUnderTest) -> None:
    await room(engine, "lobby")
    got = [(await engine.log.append("lobby", "alice", f"m{i}", "hi")).message.seq for i in range(5)]
    assert got == [1, 2, 3, 4, 5]
    assert await engine.log.last_seq("lobby") == 5


async def test_rooms_have_independent_seqs(engine: EngineUnderTest) -> None:
    await room(engine, "lobby")
    await room(engine, "dev")
    order = ["lobby", "dev", "dev", "lobby", "dev", "lobby", "lobby"]
    got: dict[str, list[int]] = {"lobby": [], "dev": []}
    for i, name in enumerate(order):
        appended = await engine.log.append(name, "alice", f"m{i}", "hi")
        got[name].append(appended.message.seq)
    assert got == {"lobby": [1, 2, 3, 4], "dev": [1, 2, 3]}
    assert (await engine.log.last_seq("lobby"), await engine.log.last_seq("dev")) == (4, 3)


async def test_last_seq_of_an_empty_room_is_0(engine: EngineUnderTest) -> None:
    await room(engine, "lobby")
    assert await engine.log.last_seq("lobby") == 0


async def test_append_returns_the_stored_message_and_publishes_it(
    engine: EngineUnderTest,
) -> None:
    await room(engine, "lobby")
    before = int(time.time() * 1000)
    appended = await engine.log.append("lobby", "alice", "m-1", "héllo 😀")
    after = int(time.time() * 1000)
    m = appended.message
    assert appended.created is True
    assert (m.room, m.seq, m.id, m.sender, m.body) == ("lobby", 1, "m-1", "alice", "héllo 😀")
    assert before <= m.ts <= after
    assert engine.published == [m], "published by the time append returns"
    assert await engine.log.read("lobby", 0, 1) == [m]


# The log: idempotency


async def test_repeated_append_returns_the_original_message_not_created(
    engine: EngineUnderTest,
) -> None:
    await room(engine, "lobby")
    first = await engine.log.append("lobby", "alice", "m1", "hello")
    await engine.log.append("lobby", "alice", "m2", "later")
    again = await engine.log.append("lobby", "alice", "m1", "hello")
    assert again.created is False
    assert again.message == first.message  # same seq and same ts
    assert await engine.log.last_seq("lobby") == 2
    assert seqs(engine.published) == [1, 2], "a repeat is not published again"


async def test_same_id_from_another_sender_or_room_is_another_message(
    engine: EngineUnderTest,
) -> None:
    await room(engine, "lobby")
    await room(engine, "dev")
    await user(engine, "bob")
    a = await engine.log.append("lobby", "alice", "same", "hi")
    b = await engine.log.append("lobby", "bob", "same", "hi")
    c = await engine.log.append("dev", "alice", "same", "hi")
    assert (a.created, b.created, c.created) == (True, True, True)
    assert (a.message.seq, b.message.seq, c.message.seq) == (1, 2, 1)


async def test_same_id_with_another_body_is_a_conflict_and_changes_nothing(
    engine: EngineUnderTest,
) -> None:
    await room(engine, "lobby")
    first = await engine.log.append("lobby", "alice", "m1", "hello")
    with pytest.raises(Conflict):
        await engine.log.append("lobby", "alice", "m1", "HELLO")
    assert await engine.log.last_seq("lobby") == 1
    assert await engine.log.read("lobby", 0, 10) == [first.message]
    assert engine.published == [first.message]
    nxt = await engine.log.append("lobby", "alice", "m2", "next")
    assert nxt.message.seq == 2, "a conflict leaves no gap"


async def test_a_conflict_does_not_disturb_appends_committed_with_it(
    engine: EngineUnderTest,
) -> None:
    await room(engine, "lobby")
    await engine.log.append("lobby", "alice", "taken", "original")
    results = await asyncio.gather(
        *(engine.log.append("lobby", "alice", f"m{i}", "ok") for i in range(20)),
        engine.log.append("lobby", "alice", "taken", "different"),
        *(engine.log.append("lobby", "alice", f"n{i}", "ok") for i in range(20)),
        return_exceptions=True,
    )
    assert isinstance(results[20], Conflict)
    created = [r for i, r in enumerate(results) if i != 20]
    assert sorted(r.message.seq for r in created) == list(range(2, 42))
    assert seqs(await engine.log.read("lobby", 0, 100)) == list(range(1, 42))


async def test_concurrent_repeats_of_one_id_create_one_message(engine: EngineUnderTest) -> None:
    await room(engine, "lobby")
    results = await asyncio.gather(
        *(engine.log.append("lobby", "alice", "once", "body") for _ in range(50))
    )
    assert sum(r.created for r in results) == 1
    assert {r.message for r in results} == {results[0].message}
    assert await engine.log.last_seq("lobby") == 1
    assert len(engine.published) == 1


async def test_concurrent_appends_get_each_seq_once_commit_in_groups_publish_in_order(
    engine: EngineUnderTest,
) -> None:
    count = 2_000
    await room(engine, "lobby")
    transactions_before = engine.write_transactions()

    results = await asyncio.gather(
        *(engine.log.append("lobby", "alice", f"m{i}", f"body {i}") for i in range(count))
    )

    assert all(r.created for r in results)
    assert sorted(r.message.seq for r in results) == list(range(1, count + 1))
    by_id = {r.message.id: r.message for r in results}
    assert len(by_id) == count
    assert all(m.body == f"body {m.id[1:]}" for m in by_id.values())
    assert seqs(engine.published) == list(range(1, count + 1)), "published once each, in order"
    assert set(engine.published) == set(by_id.values())
    assert await engine.log.last_seq("lobby") == count
    assert seqs(await engine.log.read("lobby", 0, count)) == list(range(1, count + 1))
    transactions_after = engine.write_transactions()
    if transactions_before is not None and transactions_after is not None:
        transactions = transactions_after - transactions_before
        assert 1 <= transactions <= count // 20, f"{transactions} commits for {count} appends"


async def test_concurrent_appends_to_one_room_take_seqs_in_call_order(
    engine: EngineUnderTest,
) -> None:
    # A connection's sends run as concurrent appends, started in frame order: the seqs
    # must follow that order (the protocol promises one connection's messages in order).
    await room(engine, "lobby")
    results = await asyncio.gather(
        *(engine.log.append("lobby", "alice", f"m{i}", "body") for i in range(60))
    )
    assert [r.message.seq for r in results] == list(range(1, 61))


async def test_concurrent_appends_to_many_rooms_are_gapless_in_each(
    engine: EngineUnderTest,
) -> None:
    names = [f"room{i}" for i in range(5)]
    for name in names:
        await room(engine, name)
    pairs = [(name, i) for i in range(100) for name in names]
    results = await asyncio.gather(
        *(engine.log.append(name, "alice", f"m{i}", "b") for name, i in pairs)
    )
    for name in names:
        assert sorted(r.message.seq for r in results if r.message.room == name) == list(
            range(1, 101)
        )
        published = [m.seq for m in engine.published if m.room == name]
        assert published == list(range(1, 101))


# The log: durability


async def test_messages_and_idempotency_survive_a_restart(engine: EngineUnderTest) -> None:
    await room(engine, "lobby")
    await fill(engine, "lobby", 3)
    stored = await engine.log.read("lobby", 0, 3)

    await engine.restart()

    assert await engine.log.read("lobby", 0, 3) == stored
    assert await engine.log.last_seq("lobby") == 3
    again = await engine.log.append("lobby", "alice", "m2", "body 2")
    assert (again.created, again.message) == (False, stored[1])
    with pytest.raises(Conflict):
        await engine.log.append("lobby", "alice", "m2", "another body")
    nxt = await engine.log.append("lobby", "alice", "m4", "body 4")
    assert (nxt.created, nxt.message.seq) == (True, 4)


async def test_store_survives_a_restart(engine: EngineUnderTest) -> None:
    created = await room(engine, "lobby", owner="Alice", private=True)
    await user(engine, "bob")
    await user(engine, "carol")
    await engine.store.add_member("lobby", "bob", 8)
    await engine.store.set_member("lobby", "bob", Role.MODERATOR, 9)
    await engine.store.ban("lobby", "carol", "Alice", 10)
    await engine.store.create_token("t1", "bob", now=1, expires_at=10**12, session_id="s-t1")

    await engine.restart()

    assert await engine.store.get_room("lobby") == created
    assert await engine.store.role("lobby", "bob") is Role.MODERATOR
    assert await engine.store.is_banned("lobby", "carol") is True
    assert who(await engine.store.token_session("t1", 2)) == ("bob", 10**12)
    with pytest.raises(Conflict):
        await engine.store.create_user("ALICE", "h", 1)


# The log: reading


async def test_read_returns_after_exclusive_to_upto_inclusive_ascending(
    engine: EngineUnderTest,
) -> None:
    await room(engine, "lobby")
    await fill(engine, "lobby", 10)
    assert seqs(await engine.log.read("lobby", 0, 10)) == list(range(1, 11))
    assert seqs(await engine.log.read("lobby", 3, 7)) == [4, 5, 6, 7]
    assert seqs(await engine.log.read("lobby", 9, 50)) == [10]
    assert await engine.log.read("lobby", 10, 10) == []
    assert await engine.log.read("lobby", 5, 5) == []
    assert await engine.log.read("elsewhere", 0, 10) == []


async def test_page_of_an_empty_room_is_empty_with_no_more(engine: EngineUnderTest) -> None:
    await room(engine, "lobby")
    for before, after in [(None, None), (5, None), (None, 0), (5, 0)]:
        assert await engine.log.page("lobby", before, after, 50) == ([], False)


async def test_page_without_bounds_is_the_newest_messages_with_more_if_older_exist(
    engine: EngineUnderTest,
) -> None:
    await room(engine, "lobby")
    await fill(engine, "lobby", 10)
    page, more = await engine.log.page("lobby", None, None, 3)
    assert (seqs(page), more) == ([8, 9, 10], True)
    page, more = await engine.log.page("lobby", None, None, 10)
    assert (seqs(page), more) == (list(range(1, 11)), False)


async def test_page_before_is_the_newest_below_it_exclusive(engine: EngineUnderTest) -> None:
    await room(engine, "lobby")
    await fill(engine, "lobby", 10)
    page, more = await engine.log.page("lobby", 8, None, 3)
    assert (seqs(page), more) == ([5, 6, 7], True)
    page, more = await engine.log.page("lobby", 4, None, 3)
    assert (seqs(page), more) == ([1, 2, 3], False)


async def test_page_after_alone_is_the_oldest_above_it_exclusive(engine: EngineUnderTest) -> None:
    await room(engine, "lobby")
    await fill(engine, "lobby", 10)
    page, more = await engine.log.page("lobby", None, 2, 3)
    assert (seqs(page), more) == ([3, 4, 5], True)
    page, more = await engine.log.page("lobby", None, 7, 3)
    assert (seqs(page), more) == ([8, 9, 10], False)


async def test_page_with_both_bounds_is_the_newest_between_them(engine: EngineUnderTest) -> None:
    await room(engine, "lobby")
    await fill(engine, "lobby", 10)
    page, more = await engine.log.page("lobby", 9, 2, 3)
    assert (seqs(page), more) == ([6, 7, 8], True)
    page, more = await engine.log.page("lobby", 9, 5, 3)
    assert (seqs(page), more) == ([6, 7, 8], False)


def expected_page(
    last: int, before: int | None, after: int | None, limit: int
) -> tuple[list[int], bool]:
    """The spec's history rules, written out independently of any engine."""
    between = [
        s
        for s in range(1, last + 1)
        if (before is None or s < before) and (after is None or s > after)
    ]
    if after is not None and before is None:
        return between[:limit], len(between) > limit  # oldest above `after`; more = newer
    return between[-limit:], len(between) > limit  # newest below `before`; more = older


async def test_page_follows_the_history_rules_for_every_bound_and_limit(
    engine: EngineUnderTest,
) -> None:
    last = 12
    await room(engine, "lobby")
    await room(engine, "other")
    await fill(engine, "lobby", last)
    await fill(engine, "other", 3)  # another room's messages never leak into a page
    stored = {m.seq: m for m in await engine.log.read("lobby", 0, last)}
    bounds = [None, *range(0, last + 3)]
    for before, after, limit in itertools.product(bounds, bounds, [1, 2, 5, 11, 12, 13, 200]):
        page, more = await engine.log.page("lobby", before, after, limit)
        want, want_more = expected_page(last, before, after, limit)
        assert (seqs(page), more) == (want, want_more), (before, after, limit)
        assert page == [stored[s] for s in want]
