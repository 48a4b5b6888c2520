"""With `--redis-replicas N`: publish a room's messages once N replicas have them, and read
no further than that (the room's `shown` marker, `engine.redis.schema`).

The append script does not publish in that mode. After WAIT confirmed the replicas, the
node runs `PUBLISH_SCRIPT` per room, which publishes everything above the marker up to the
batch's highest seq and raises the marker; reads that feed clients stop at the marker
(`READ_SCRIPT`). So no client is shown a message a failover can take back, and no seq is
shown with two messages: an entry the promoted replica lacks was never published or read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.exceptions import NoScriptError

from hubbub.engine.base import Message
from hubbub.engine.redis.client import RedisClient
from hubbub.engine.redis.schema import (
    DIRTY_KEY,
    PUBLISH_SCRIPT,
    READ_SCRIPT,
    SCRIPT_SHA,
    channel,
    decode_entries,
    gone_key,
    shown_key,
    stream_key,
)


async def publish_replicated(
    client: RedisClient, uptos: Mapping[str, int], command: str
) -> dict[str, BaseException | None]:
    """Publish each room's messages up to its seq (all confirmed on the replicas) and raise
    its marker; per room, the error that stopped it (None: done). A connection error
    propagates: the scripts may or may not have run, and a repeat publishes nothing twice."""
    rooms = sorted(uptos)
    commands = [_publish_command(room, uptos[room], command) for room in rooms]
    # Dirty again: a worker may have visited the rooms between the append and this publish
    # and found nothing it may move yet (the SADD's reply is not needed: the scan covers it).
    replies = (await _pipeline(client, [*commands, ("SADD", DIRTY_KEY, *rooms)]))[:-1]
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:  # a restarted Redis, say: nothing ran for these rooms
        await client.script_load(PUBLISH_SCRIPT)
        again = await _pipeline(client, [commands[i] for i in missing])
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    return {
        room: reply if isinstance(reply, BaseException) else None
        for room, reply in zip(rooms, replies, strict=True)
    }


def _publish_command(room: str, upto: int, command: str) -> tuple[Any, ...]:
    keys = (shown_key(room), stream_key(room), gone_key(room))
    return (
        "EVALSHA",
        SCRIPT_SHA[PUBLISH_SCRIPT],
        len(keys),
        *keys,
        str(upto),
        channel(room),
        command,
    )


async def _pipeline(client: RedisClient, commands: list[tuple[Any, ...]]) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    return replies


async def read_shown(
    client: RedisClient,
    room: str,
    low: int,
    high: int | None,
    count: int | None,
    newest_first: bool,
) -> list[Message]:
    """The stream's messages of seqs low..high (None: no bound), never above the marker."""
    keys = (stream_key(room), shown_key(room))
    args = (
        str(low),
        "+" if high is None else str(high),
        str(count or 0),
        "1" if newest_first else "0",
    )
    try:
        reply = await client.evalsha(SCRIPT_SHA[READ_SCRIPT], len(keys), *keys, *args)
    except NoScriptError:
        reply = await client.eval(READ_SCRIPT, len(keys), *keys, *args)
    return decode_entries(reply)
