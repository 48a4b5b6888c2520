"""`Log.append_entry` on the SQL engines: updates checked in the turn that takes their seq.

Concurrent appends of one room must never race a check: fifty distinct reaction keys at
most whatever arrives at once, one reaction per user and key, an edit or a reaction after
a delete refused, and through it all the seqs stay gapless and published in order.
"""

from __future__ import annotations

import asyncio

import pytest
from support.engine_handles import EngineUnderTest, room, user

from hubbub.engine.entry import Draft, Kind
from hubbub.protocol.errors import Conflict, NotFound, TooLarge


def react(target: int, key: str) -> Draft:
    return Draft(Kind.REACT, target=target, key=key)


async def message(engine: EngineUnderTest, body: str = "hi", sender: str = "alice") -> int:
    appended = await engine.log.append("lobby", sender, f"m-{body}", body)
    return appended.message.seq


def gapless(engine: EngineUnderTest) -> list[int]:
    return [m.seq for m in engine.published]


async def test_concurrent_reactions_stop_at_fifty_keys_and_keep_seqs_gapless(
    engine: EngineUnderTest,
) -> None:
    await room(engine)
    target = await message(engine)
    results = await asyncio.gather(
        *(
            engine.log.append_entry("lobby", "alice", f"r{i}", react(target, f"k{i}"))
            for i in range(60)
        ),
        return_exceptions=True,
    )
    taken = [r for r in results if not isinstance(r, BaseException)]
    assert len(taken) == 50
    assert all(isinstance(r, TooLarge) for r in results if isinstance(r, BaseException))
    assert gapless(engine) == list(range(1, 52))
    page, _ = await engine.log.page("lobby", None, None, 10)
    assert len(page[0].reactions) == 50


async def test_one_reaction_per_user_and_key_whatever_arrives_at_once(
    engine: EngineUnderTest,
) -> None:
    await room(engine)
    target = await message(engine)
    results = await asyncio.gather(
        *(
            engine.log.append_entry("lobby", "alice", f"r{i}", react(target, "👍"))
            for i in range(8)
        ),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert sum(isinstance(r, Conflict) for r in results) == 7
    await user(engine, "bob")
    await engine.log.append_entry("lobby", "bob", "b1", react(target, "👍"))
    page, _ = await engine.log.page("lobby", None, None, 10)
    (reaction,) = page[0].reactions
    assert (reaction.key, reaction.count, reaction.users) == ("👍", 2, ("alice", "bob"))
    assert reaction.view("BOB")["me"] is True


async def test_updates_queued_behind_a_delete_see_it(engine: EngineUnderTest) -> None:
    await room(engine)
    target = await message(engine)
    results = await asyncio.gather(
        engine.log.append_entry("lobby", "alice", "d", Draft(Kind.DELETE, target=target)),
        engine.log.append_entry("lobby", "alice", "e", Draft(Kind.EDIT, body="x", target=target)),
        engine.log.append_entry("lobby", "alice", "r", react(target, "a")),
        return_exceptions=True,
    )
    assert not isinstance(results[0], BaseException)
    assert isinstance(results[1], NotFound) and isinstance(results[2], NotFound)
    assert gapless(engine) == [1, 2]
    with pytest.raises(NotFound):
        await engine.log.versions("lobby", target)


async def test_the_log_replays_entries_as_sent_and_pages_the_current_state(
    engine: EngineUnderTest,
) -> None:
    await room(engine)
    root = await message(engine, "root")
    await engine.log.append_entry("lobby", "alice", "e", Draft(Kind.EDIT, body="ro0t", target=root))
    reply = await engine.log.append_entry("lobby", "alice", "t", Draft(body="in", thread=root))
    await engine.log.append_entry("lobby", "alice", "topic", Draft(Kind.TOPIC, topic="news"))
    entries = await engine.log.read("lobby", 0, 10)
    assert [(m.kind, m.body) for m in entries] == [
        ("message", "root"),
        ("edit", "ro0t"),
        ("message", "in"),
        ("topic", ""),
    ]
    assert [m.seq for m in entries] == gapless(engine) == [1, 2, 3, 4]
    page, more = await engine.log.page("lobby", None, None, 10)
    assert not more
    assert [m.seq for m in page] == [root]
    (current,) = page
    assert (current.current, current.edited) == ("ro0t", entries[1].ts)
    assert current.replies == (1, reply.message.seq, reply.message.ts)
    thread, _ = await engine.log.page("lobby", None, None, 10, thread=root)
    assert [m.seq for m in thread] == [root, reply.message.seq]
    assert (await engine.store.get_room("lobby")).topic == "news"  # type: ignore[union-attr]
    versions = await engine.log.versions("lobby", root)
    assert [(m.seq, m.body) for m in versions] == [(root, "root"), (2, "ro0t")]
