"""The Lua scripts of presence (`engine.redis.presence`), apart from the room log's in
`engine.redis.schema`, whose keys (`presence_keys`, `rooms_key`, `NODES_KEY`) they use."""

from __future__ import annotations

from typing import Final

_NOW_MS: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: 1 node set, 2 counts, 3 names (`presence_keys`). ARGV: 1 user key, 2 display name.
# Returns 1 when this made the user online in the room (count 0 -> 1), else 0.
ADD_SCRIPT: Final = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[1], 1) == 1 then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS, ARGV: as ADD_SCRIPT (the display name unused). Returns 1 when the count reached 0,
# or when the node's entry was already gone (Redis lost it, or a sweep took it) and no node
# counts the user: then no `offline` may have been published, and a repeated one is harmless
# where a missing one would leave the user online on every other node.
REMOVE_SCRIPT: Final = """
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then
  if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 1 end
  return 0
end
if redis.call('HINCRBY', KEYS[2], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  return 1
end
return 0
"""

# Removes one user key from the node set; returns its display name if the count reached 0.
_LEAVE: Final = """
local function leave(u)
  redis.call('SREM', KEYS[1], u)
  if redis.call('HINCRBY', KEYS[2], u, -1) <= 0 then
    local name = redis.call('HGET', KEYS[3], u) or u
    redis.call('HDEL', KEYS[2], u)
    redis.call('HDEL', KEYS[3], u)
    return name
  end
  return nil
end
"""

# KEYS: as ADD_SCRIPT. Removes every user of the node set; returns the display names whose
# count reached 0 (so of concurrent drops only the one that removed an entry reports it).
DROP_SCRIPT: Final = (
    _LEAVE
    + """
local gone = {}
for _, u in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local name = leave(u)
  if name then table.insert(gone, name) end
end
redis.call('DEL', KEYS[1])
return gone
"""
)

# KEYS: as ADD_SCRIPT. ARGV: user key, display name, user key, display name, ...
# Makes the node set exactly the given users; returns {names now online, names now offline}.
SYNC_SCRIPT: Final = (
    _LEAVE
    + """
local want = {}
for i = 1, #ARGV, 2 do want[ARGV[i]] = true end
local online, offline = {}, {}
for _, u in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not want[u] then
    local name = leave(u)
    if name then table.insert(offline, name) end
  end
end
for i = 1, #ARGV, 2 do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    if redis.call('HINCRBY', KEYS[2], ARGV[i], 1) == 1 then
      redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
      table.insert(online, ARGV[i + 1])
    end
  end
end
return {online, offline}
"""
)

# KEYS: 1 nodes. ARGV: 1 incarnation, 2 ttl ms, 3 '1' to register, '0' to refresh.
# A refresh succeeds (1) only while the entry is live; an entry that is missing, expired or
# claimed by a sweeper answers 0 and is left alone.
BEAT_SCRIPT: Final = (
    _NOW_MS
    + """
if ARGV[3] ~= '1' then
  local v = redis.call('HGET', KEYS[1], ARGV[1])
  if not v or tonumber(v) < now then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', now + tonumber(ARGV[2])))
return 1
"""
)

# KEYS: 1 nodes. ARGV: 1 incarnation, 2 lease ms. Claims an expired entry, or one whose
# sweep lease ran out, for one sweeper: returns the claim's marker (negative), else 0.
CLAIM_SCRIPT: Final = (
    _NOW_MS
    + """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
v = tonumber(v)
if v >= now or (v < 0 and -v >= now) then return 0 end
local marker = -(now + tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', marker))
return marker
"""
)

# KEYS: 1 nodes. ARGV: 1 incarnation, 2 marker. Deletes the entry if the claim still holds.
RELEASE_SCRIPT: Final = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and tonumber(v) == tonumber(ARGV[2]) then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""

PRESENCE_WRITER_SCRIPTS: Final = (ADD_SCRIPT, REMOVE_SCRIPT, SYNC_SCRIPT, BEAT_SCRIPT)
"""The scripts a node's presence writer runs by EVALSHA (reloaded together if lost)."""
