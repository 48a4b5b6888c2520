"""The distributed engine's Redis layout in one place: every key and channel, what their
values hold, and the room log's Lua scripts (presence's are in `presence_scripts`, the
counters' in `counters`). The other modules of `engine.redis` build keys, pack payloads
and run scripts by EVALSHA only through this one.

Keys and channels (`<room>` is the room name, `<inc>` a node incarnation `<node id>:<token>`,
`<user>` a lower-cased user name):

    key                                   type     written by                  TTL
    hubbub:{<room>}:seq                   string   APPEND_SCRIPT (INCR);       none
                                                   RedisLog seeds a missing
                                                   one (SET NX)
    hubbub:{<room>}:shown                 string   APPEND_SCRIPT creates it,   none
                                                   PUBLISH_SCRIPT raises it
                                                   (with --redis-replicas)
    hubbub:{<room>}:log                   stream   APPEND_SCRIPT (XADD);       none (the
                                                   the worker trims it         worker XTRIMs)
    hubbub:{<room>}:id:<n>:<user>:<id>    string   APPEND_SCRIPT               none until the
                                                                               worker's EXPIRE
    hubbub:{<room>}:moving                list     the worker                  none
    hubbub:{<room>}:gone                  string   REDACT_SCRIPT (a deleted    none (the
                                                   room: appends refused)      purge DELs)
    hubbub:{<room>}:pnode:<inc>           set      presence scripts            none (a sweep
                                                                               deletes it)
    hubbub:{<room>}:pcount                hash     presence scripts            none
    hubbub:{<room>}:pname                 hash     presence scripts            none
    hubbub:node:{<inc>}:rooms             set      RedisPresence               none (a sweep
                                                                               deletes it)
    hubbub:nodes                          hash     BEAT / CLAIM / RELEASE;     none
                                                   HDEL on retirement
    hubbub:dirty                          set      RedisLog (SADD per batch);  none
                                                   the worker (SPOP, SADD)
    hubbub:{login}:<key>                  string   COUNTERS_HIT_SCRIPT;        the counter's
                                                   RedisCounters (DEL)         window (PEXPIRE)

    channel                               published by (SPUBLISH: sharded pub/sub)
    hubbub:{<room>}:messages              APPEND_SCRIPT (messages; PUBLISH when RedisLog is
                                          built without `sharded_pubsub`) or, with
                                          --redis-replicas, PUBLISH_SCRIPT; RedisBus (events,
                                          removals), the worker (swept nodes' presence events)
    hubbub:control                        RedisBus, by PUBLISH (token revocations)
    hubbub:canary:{<node id>}             RedisBus: the node's canaries to itself, subscribed
                                          with its rooms (`engine.redis.canary`); on a
                                          cluster one per master, `{<node id>/<n>}`

- `seq`: the room's last seq. `log`: entry ids are `<seq>-0`, fields room, seq, id, from,
  body, ts (`decode_message`). `id:<n>:<user>:<id>`: the idempotency record of (room,
  sender, id); `n` is the length of the lower-cased sender, which keeps (sender, id) pairs
  apart whatever characters they contain; its value is the message's publication payload.
  The worker gives it a TTL (`--idempotency-ttl`) once the message is in PostgreSQL.
- `shown`: with `--redis-replicas N`, the highest seq known to be on N replicas, and so
  published and readable: the append script does not publish then, and every read that
  feeds clients (history, join cuts and replays, gap fills, the worker's moves into
  PostgreSQL) stops at it (`shown_seq`); entries above it exist only for the time of a
  WAIT, or after a failed one. Without the key, everything up to `seq` is shown: the key
  never exists with `--redis-replicas 0`, whose append script deletes a leftover one.
- `gone`: set when the room is deleted: the append script refuses the room from then on,
  and `REDACT_SCRIPT` rewrote its stream without bodies. A purge (`RedisLog.purge`, once
  the name's grace is over) deletes every key of the room, this one included.
- `moving`: the worker's notes of batches it is moving into PostgreSQL, `low:high` seq
  ranges (`engine.redis.worker`).
- `pnode:<inc>`: the user keys present in the room through that node incarnation;
  `pcount`: user key -> number of incarnations holding the user; `pname`: user key ->
  display name, while the count is above zero. `hubbub:node:{<inc>}:rooms`: the rooms
  where the incarnation has entries (`engine.redis.presence`).
- `hubbub:nodes`: incarnation -> expiry (Unix ms, Redis server time); a negative value -T
  marks a sweep in progress whose lease ends at T.
- `hubbub:dirty`: rooms with appends the worker may not have moved yet.
- `hubbub:{login}:<key>`: windowed counters (login throttling, room quota); they expire
  a window after their first hit (`engine.redis.counters`).

Cluster slots. Every key and channel of a room carries the room as the hash tag `{room}`,
so on Redis Cluster a room's log, records, presence and sharded channel live in one slot
and one script may touch them all. The counters share the tag `{login}` (one slot: a
script reads or bumps several at once); an incarnation's room set carries the
incarnation. `hubbub:nodes` and `hubbub:dirty` are single keys, each in its own slot.

Payloads. On a room's channel a message is the msgpack array [room, seq, id, from, body,
ts] (packed by APPEND_SCRIPT, which stores the same bytes as the idempotency record:
`decode_published`); every other publication is a msgpack array headed by an integer
kind: [KIND_EVENT, room, frame, skip user or "", skip connection or ""] (`event_payload`),
[KIND_REMOVED, room, user, reason] (`removed_payload`), [KIND_ROOM_CHANGED, room,
change] (`room_changed_payload`), and on `hubbub:control`
[KIND_REVOKED, token hash] (`revoked_payload`).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from hubbub.engine.base import Message

# Keys and channels

DIRTY_KEY: Final = "hubbub:dirty"
NODES_KEY: Final = "hubbub:nodes"
CONTROL_CHANNEL: Final = "hubbub:control"
COUNTER_PREFIX: Final = "hubbub:{login}:"
_CHANNEL_PREFIX, _CHANNEL_SUFFIX = "hubbub:{", "}:messages"


def room_prefix(room: str) -> str:
    """What every key and channel of a room starts with: the room is the hash tag."""
    return f"hubbub:{{{room}}}"


def seq_key(room: str) -> str:
    return f"{room_prefix(room)}:seq"


def shown_key(room: str) -> str:
    return f"{room_prefix(room)}:shown"


def shown_seq(shown: bytes | str | None, seq: bytes | str | None) -> int:
    """The highest seq clients may see, from the values of `shown_key` and `seq_key`."""
    return int(shown if shown is not None else seq or 0)


def stream_key(room: str) -> str:
    return f"{room_prefix(room)}:log"


def id_key(room: str, sender: str, msg_id: str) -> str:
    key = sender.lower()
    return f"{room_prefix(room)}:id:{len(key)}:{key}:{msg_id}"


def moving_key(room: str) -> str:
    return f"{room_prefix(room)}:moving"


def gone_key(room: str) -> str:
    return f"{room_prefix(room)}:gone"


def room_key_pattern(room: str) -> str:
    """A SCAN pattern of every key of a room (room names hold no glob characters)."""
    return f"{room_prefix(room)}:*"


def channel(room: str) -> str:
    return f"{room_prefix(room)}:messages"


def room_of(channel_name: bytes | str) -> str:
    """The room of a room's channel name (the inverse of `channel`)."""
    name = channel_name.decode() if isinstance(channel_name, bytes) else channel_name
    return name[len(_CHANNEL_PREFIX) : -len(_CHANNEL_SUFFIX)]


def node_set_key(room: str, incarnation: str) -> str:
    return f"{room_prefix(room)}:pnode:{incarnation}"


def count_key(room: str) -> str:
    return f"{room_prefix(room)}:pcount"


def name_key(room: str) -> str:
    return f"{room_prefix(room)}:pname"


def presence_keys(room: str, incarnation: str) -> tuple[str, str, str]:
    """The keys every presence script of a room takes, in order (one hash slot)."""
    return node_set_key(room, incarnation), count_key(room), name_key(room)


def rooms_key(incarnation: str) -> str:
    return f"hubbub:node:{{{incarnation}}}:rooms"


def counter_key(key: str) -> str:
    return COUNTER_PREFIX + key


# Payloads

KIND_EVENT: Final = 1
KIND_REMOVED: Final = 2
KIND_REVOKED: Final = 3
KIND_ROOM_CHANGED: Final = 4

_encode = msgspec.msgpack.Encoder().encode
_published = msgspec.msgpack.Decoder(tuple[str, int, str, str, str, int])


def decode_published(payload: bytes) -> Message:
    """The message of a publication on a room's channel (also the idempotency record)."""
    room, seq, msg_id, sender, body, ts = _published.decode(payload)
    return Message(room=room, seq=seq, id=msg_id, sender=sender, body=body, ts=ts)


def decode_message(fields: Mapping[bytes, bytes]) -> Message:
    """The message of one stream entry's fields (as XRANGE / XREADGROUP return them)."""
    return Message(
        room=fields[b"room"].decode(),
        seq=int(fields[b"seq"]),
        id=fields[b"id"].decode(),
        sender=fields[b"from"].decode(),
        body=fields[b"body"].decode(),
        ts=int(fields[b"ts"]),
        deleted=fields.get(b"deleted") == b"1",
    )


def decode_entries(reply: list[Any]) -> list[Message]:
    """The messages of stream entries as a script returns them ([id, [field, value, ...]])."""
    messages = []
    for _, flat in reply:
        messages.append(decode_message(dict(zip(flat[::2], flat[1::2], strict=True))))
    return messages


def event_payload(
    room: str,
    frame: dict[str, Any],
    skip_user: str | None = None,
    skip_connection: str | None = None,
) -> bytes:
    """An event frame for a room's channel (typing, presence)."""
    return _encode([KIND_EVENT, room, frame, skip_user or "", skip_connection or ""])


def removed_payload(room: str, user: str, reason: str) -> bytes:
    """A removal notice (kick, ban, leave) for a room's channel."""
    return _encode([KIND_REMOVED, room, user, reason])


def room_changed_payload(room: str, change: str) -> bytes:
    """A room archived, unarchived or deleted, for the room's channel."""
    return _encode([KIND_ROOM_CHANGED, room, change])


def revoked_payload(token_hash: str) -> bytes:
    """A token revocation for `CONTROL_CHANNEL`."""
    return _encode([KIND_REVOKED, token_hash])


# Scripts of the log (engine.redis.log)

# KEYS: 1 seq counter, 2 stream, 3 idempotency record, 4 the room's `gone` marker,
# 5 the room's `shown` marker.
# ARGV: 1 room, 2 id, 3 sender, 4 body, 5 '1' if a missing counter must be seeded first,
# 6 channel, 7 PUBLISH | SPUBLISH, or '' not to publish (with --redis-replicas: the node
# publishes by PUBLISH_SCRIPT once WAIT confirmed the replicas have the message).
# Returns {1, payload} when it created the message, {0, payload} when the id is known (the
# stored message: the caller applies `engine.base.replayed` to it), {-2} when the counter
# is missing and must be seeded from the database, {-3} when the room was deleted (the
# `gone` marker: `REDACT_SCRIPT`); nothing is written in those two cases.
# The record has no TTL: the worker gives it one once the message is in the database.
# The stream is written first: if XADD fails (say, a counter behind the stream) the script
# stops before any other write, so a failure never leaves a seq without its message.
# Not publishing, the script creates `shown` at the seq before this message (all earlier
# ones were shown: a room's first message, or the first since --redis-replicas was set).
# A known id then rewrites `shown` unchanged: WAIT waits for the connection's last write,
# and that write makes the WAIT after this script cover the stored message, which a
# failed WAIT may have left short of the replicas. Publishing, it deletes a `shown` left
# by nodes that ran with --redis-replicas (without this, their marker would hide every
# message from now on).
APPEND_SCRIPT: Final = """
if redis.call('EXISTS', KEYS[4]) == 1 then return {-3} end
local stored = redis.call('GET', KEYS[3])
if stored then
  if ARGV[7] == '' then
    local shown = redis.call('GET', KEYS[5])
    if shown then redis.call('SET', KEYS[5], shown) end
  end
  return {0, stored}
end
local last = redis.call('GET', KEYS[1])
if not last then
  if ARGV[5] == '1' then return {-2} end
  last = '0'
end
local seq = tonumber(last) + 1
local now = redis.call('TIME')
local ts = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('XADD', KEYS[2], string.format('%d-0', seq), 'room', ARGV[1],
  'seq', string.format('%d', seq), 'id', ARGV[2], 'from', ARGV[3], 'body', ARGV[4],
  'ts', string.format('%d', ts))
redis.call('INCR', KEYS[1])
local payload = cmsgpack.pack({ARGV[1], seq, ARGV[2], ARGV[3], ARGV[4], ts})
redis.call('SET', KEYS[3], payload)
if ARGV[7] == '' then
  if redis.call('EXISTS', KEYS[5]) == 0 then redis.call('SET', KEYS[5], last) end
else
  redis.call('DEL', KEYS[5])
  redis.call(ARGV[7], ARGV[6], payload)
end
return {1, payload}
"""

# KEYS: 1 the room's `shown` marker, 2 stream, 3 the room's `gone` marker.
# ARGV: 1 upto (a seq WAIT confirmed on the replicas), 2 channel, 3 PUBLISH | SPUBLISH.
# Publishes every entry above `shown` up to `upto`, in seq order, and raises `shown` to
# `upto`; returns how many it published. Every entry below `upto` was written before it,
# so the replicas that acknowledged `upto` have them too: this also publishes what a node
# that died between its WAIT and its publish left behind. Each payload is the one
# APPEND_SCRIPT packed (the same fields, the same types). Nothing is published for a
# deleted room; without a marker everything is shown already.
PUBLISH_SCRIPT: Final = """
local shown = redis.call('GET', KEYS[1])
if not shown or tonumber(ARGV[1]) <= tonumber(shown) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local entries = redis.call('XRANGE', KEYS[2], string.format('%d', tonumber(shown) + 1), ARGV[1])
for _, entry in ipairs(entries) do
  local f = entry[2]
  local fields = {}
  for i = 1, #f, 2 do fields[f[i]] = f[i + 1] end
  redis.call(ARGV[3], ARGV[2], cmsgpack.pack({fields['room'], tonumber(fields['seq']),
    fields['id'], fields['from'], fields['body'], tonumber(fields['ts'])}))
end
return #entries
"""

# KEYS: 1 stream, 2 the room's `shown` marker. ARGV: 1 low seq, 2 high seq or '+', 3 the
# most entries or '0' for all, 4 '1' for newest first. The stream's entries from low to
# high, never above `shown` (when it exists), as [id, [field, value, ...]] arrays.
READ_SCRIPT: Final = """
local top = ARGV[2]
local shown = redis.call('GET', KEYS[2])
if shown and (top == '+' or tonumber(top) > tonumber(shown)) then top = shown end
local command, first, second = 'XRANGE', ARGV[1], top
if ARGV[4] == '1' then command, first, second = 'XREVRANGE', top, ARGV[1] end
if ARGV[3] == '0' then return redis.call(command, KEYS[1], first, second) end
return redis.call(command, KEYS[1], first, second, 'COUNT', ARGV[3])
"""

# KEYS: 1 stream, 2 the room's `gone` marker. Marks the room deleted (appends refused from
# now on) and rewrites its stream without bodies: each entry again under its own id, its
# body empty and `deleted` 1. Returns the number of entries rewritten.
REDACT_SCRIPT: Final = """
redis.call('SET', KEYS[2], '1')
local entries = redis.call('XRANGE', KEYS[1], '-', '+')
redis.call('DEL', KEYS[1])
for _, entry in ipairs(entries) do
  local f = entry[2]
  local fields = {}
  for i = 1, #f, 2 do fields[f[i]] = f[i + 1] end
  redis.call('XADD', KEYS[1], entry[1], 'room', fields['room'], 'seq', fields['seq'],
    'id', fields['id'], 'from', fields['from'], 'body', '', 'ts', fields['ts'], 'deleted', '1')
end
return #entries
"""

# Running scripts


@functools.cache
def _sha1(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


SCRIPT_SHA: Final = {
    script: _sha1(script) for script in (APPEND_SCRIPT, PUBLISH_SCRIPT, READ_SCRIPT, REDACT_SCRIPT)
}
"""The room log's scripts' SHA1s, the names EVALSHA runs them by."""


def evalsha(script: str, keys: Iterable[str], *args: str) -> tuple[Any, ...]:
    """The EVALSHA command of a script for a pipeline (`execute_command(*command)`)."""
    keys = tuple(keys)
    return ("EVALSHA", _sha1(script), len(keys), *keys, *args)
