"""The message log of many nodes: Redis for the recent log, PostgreSQL for all history.

Appends go to the Redis log (`RedisLog`: one script assigns the seq, records the id,
appends to the room's stream and publishes). The worker (`hubbub worker`) moves the
stream into PostgreSQL and trims it, keeping the most recent entries as a cache, so:

- history and replay read the stream for what it still holds and PostgreSQL below it
  (the worker trims only what PostgreSQL already has, so the two always meet);
- idempotency: the Redis record of an id lives until some time after its message is in
  PostgreSQL, where the unique index keeps it for ever. Before an append the id is looked
  up in PostgreSQL, batched with the other appends of the same loop turn (one query per
  turn, whatever the rooms), so a resend after any delay gets the original ack, never a copy.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from hubbub.engine.base import Appended, Message, replayed
from hubbub.engine.entry import Draft
from hubbub.engine.redis.log import RedisLog
from hubbub.protocol import rules
from hubbub.protocol.errors import BadRequest


class History(Protocol):
    """PostgreSQL-held history (`PostgresHistory`) as this log reads it; it never appends."""

    async def read(self, room: str, after: int, upto: int) -> list[Message]: ...

    async def page(
        self, room: str, before: int | None, after: int | None, limit: int
    ) -> tuple[list[Message], bool]: ...

    async def redact(self, room: str) -> None: ...
    async def purge(self, room: str) -> None: ...
    async def find_sent_in_rooms(
        self, keys: list[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], Message]: ...


class _Lookup:
    """Looks up the (room, sender key, id) keys asked in one loop turn in one query.

    Batches answer in the order they were asked, whatever order their queries finish in:
    appends then reach the Redis log in call order, which keeps one connection's pipelined
    sends in frame order."""

    def __init__(self, history: History) -> None:
        self.history = history
        self._waiting: dict[tuple[str, str, str], asyncio.Future[Message | None]] = {}
        self._tail: asyncio.Task[None] | None = None  # the latest batch

    def find(self, room: str, sender: str, msg_id: str) -> asyncio.Future[Message | None]:
        if not self._waiting:
            asyncio.get_running_loop().call_soon(self._flush)
        key = (room, sender.lower(), msg_id)
        future = self._waiting.get(key)
        if future is None:
            future = self._waiting[key] = asyncio.get_running_loop().create_future()
        return future

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, {}
        task = asyncio.get_running_loop().create_task(self._query(waiting, self._tail))
        self._tail = task
        task.add_done_callback(self._forget)

    def _forget(self, done: asyncio.Task[None]) -> None:
        if self._tail is done:
            self._tail = None

    async def _query(
        self,
        waiting: dict[tuple[str, str, str], asyncio.Future[Message | None]],
        previous: asyncio.Task[None] | None,
    ) -> None:
        try:
            found = await self.history.find_sent_in_rooms(list(waiting))
            if previous is not None:
                await asyncio.wait([previous])  # answer after the earlier batch
        except BaseException as exc:
            for future in waiting.values():
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for key, future in waiting.items():
            if not future.done():
                future.set_result(found.get(key))


class DistributedLog:
    """The Log of the Redis + PostgreSQL engine: see the module docstring."""

    def __init__(self, recent: RedisLog, history: History) -> None:
        self.recent = recent
        self.history = history
        self._lookup = _Lookup(history)

    async def append(self, room: str, sender: str, msg_id: str, body: str) -> Appended:
        stored = await self._lookup.find(room, sender, msg_id)
        if stored is not None:
            return replayed(stored, body)
        return await self.recent.append(room, sender, msg_id, body)

    async def append_entry(self, room: str, sender: str, msg_id: str, draft: Draft) -> Appended:
        """Not on this engine yet: the Redis log and the worker move messages only."""
        raise BadRequest(rules.NO_UPDATES)

    async def versions(self, room: str, seq: int) -> list[Message]:
        raise BadRequest(rules.NO_UPDATES)

    async def last_seq(self, room: str) -> int:
        return await self.recent.last_seq(room)

    async def redact(self, room: str) -> None:
        # Redis first: from then on no append of the room is taken on any node.
        await self.recent.redact(room)
        await self.history.redact(room)

    async def purge(self, room: str) -> None:
        await self.recent.purge(room)
        await self.history.purge(room)

    async def read(self, room: str, after: int, upto: int) -> list[Message]:
        newer = await self.recent.read(room, after, upto)
        if newer and newer[0].seq == after + 1:
            return newer
        top = newer[0].seq - 1 if newer else upto
        if top <= after:
            return newer
        return await self.history.read(room, after, top) + newer

    async def page(
        self,
        room: str,
        before: int | None,
        after: int | None,
        limit: int,
        thread: int | None = None,
    ) -> tuple[list[Message], bool]:
        if thread is not None:
            raise BadRequest(rules.NO_UPDATES)
        first = await self._stream_start(room)
        low = 1 if after is None else after + 1
        if first is None or (before is not None and before <= first):
            return await self.history.page(room, before, after, limit)  # all below the stream
        if low >= first:
            return await self.recent.page(room, before, after, limit)  # all in the stream
        if after is not None and before is None:
            # Oldest first: PostgreSQL holds 1 .. its last seq without holes and the stream
            # continues at or below the next one, so read PostgreSQL, then the stream.
            older, more = await self.history.page(room, None, after, limit)
            top = older[-1].seq if older else after
            if len(older) == limit:
                if not more:  # newer ones may be only in the stream yet
                    more = bool((await self.recent.page(room, None, top, 1))[0])
                return older, more
            newer, more = await self.recent.page(room, None, top, limit - len(older))
            return older + newer, more
        # Newest first: the stream's part, then PostgreSQL's below it.
        newer, _ = await self.recent.page(room, before, None, limit)  # the stream starts at first
        if len(newer) == limit:
            return newer, True  # PostgreSQL holds low .. first - 1, so older ones exist
        older, more = await self.history.page(room, first, after, limit - len(newer))
        return older + newer, more

    async def _stream_start(self, room: str) -> int | None:
        """The lowest seq the stream still holds, or None when it holds nothing."""
        head = await self.recent.read_first(room)
        return head.seq if head is not None else None
