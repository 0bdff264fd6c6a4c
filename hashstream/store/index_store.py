"""Everything an index persists in Redis, and the atomic commit of a round.

Arrays go through :mod:`hashstream.store.codec` (no pickle). A round's commit (a
:class:`RoundCommit`) is one script on the index's slot that checks the version (and the
round's lease) before it writes: the new state, a new model version, P of the new version, the
round's Y in the hash-center memory, the round's code-store segment, the round record, the
version swap and the acknowledgement (XACK + XDEL) of the chunks it learned become visible
together or not at all. A worker whose lease lapsed while it computed (a zombie) has its commit
refused instead of committing a chunk twice.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis

from hashstream.store.codec import (
    CodecError,
    array_shape,
    decode_array,
    decode_arrays,
    encode_array,
    encode_arrays,
)
from hashstream.store.item_deletes import ItemDeletes
from hashstream.store.keys import (
    IndexKeys,
    registry_key,
    supervisor_restarts_key,
    workers_alive_key,
    workers_info_key,
)
from hashstream.store.partitions import join_parts, split_segment

Arrays = dict[str, np.ndarray[Any, Any]]
GROUP = "workers"

# Whether the lease ``value`` ("<token>:<worker>") is still its holder's: held (1), or lapsed
# while no lease was taken since (2: the token counter still names it, so nobody else can
# have claimed, counted or committed); else 0. Shared by _RENEW and _COMMIT.
_LEASE_STANDING = """
local function lease_standing(lease_key, token_key, value)
  local held = redis.call('GET', lease_key)
  if held == value then return 1 end
  if not held and redis.call('GET', token_key) == string.match(value, '^(%d+):') then
    return 2
  end
  return 0
end
"""
# Extend a lease (1), or take a lapsed one back (2); 0 once another lease was taken.
# KEYS: lease, lease_token; ARGV: lease value, ttl ms.
_RENEW = _LEASE_STANDING + """
local standing = lease_standing(KEYS[1], KEYS[2], ARGV[1])
if standing == 1 then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if standing == 2 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return standing
"""
# KEYS: stream, queued_items, ingest_keys, ingest_key_expiry.
# ARGV: key, now, expires, items, answer, then the entry's field/value pairs. A key seen and
# not expired answers {0, its record}; else the chunk is queued, counted and recorded, and
# {1, chunk id} answers. Up to 100 expired keys are pruned per call (bounded memory).
_ENQUEUE_ONCE = """
local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[2], 'LIMIT', 0, 100)
if #old > 0 then
  redis.call('HDEL', KEYS[3], unpack(old))
  redis.call('ZREM', KEYS[4], unpack(old))
end
local seen = redis.call('HGET', KEYS[3], ARGV[1])
if seen then return {0, seen} end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 6))
redis.call('INCRBY', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[3], ARGV[1], id .. ' ' .. ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
return {1, id}
"""

# Take an index's round lease if nobody holds it: a new fencing token (INCR) names it.
# KEYS: lease, lease_token; ARGV: worker id, ttl ms. Returns the token, or false.
_TAKE_LEASE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], string.format('%d', token) .. ':' .. ARGV[1], 'PX', ARGV[2])
return token
"""
# A round's commit, all or nothing on the index's slot: the version must be the expected one,
# (ARGV[2] not empty) the lease must still be the caller's (held, or lapsed with no lease
# taken since: the token counter still names it) and (ARGV[3] not empty) no item delete may
# have landed since the caller filtered its segment; then the ops run in order.
# KEYS: version, lease, delete epoch, lease token counter, the keys the ops write; ARGV:
# expected version, lease value, expected delete epoch, then ops as (command, key index, n,
# n arguments). Returns 1, 0 (version moved), -1 (lease lost), -2 (deletes landed).
_COMMIT = _LEASE_STANDING + """
if tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then return 0 end
if ARGV[2] ~= '' and lease_standing(KEYS[2], KEYS[4], ARGV[2]) == 0 then return -1 end
if ARGV[3] ~= '' and tonumber(redis.call('GET', KEYS[3]) or '0') ~= tonumber(ARGV[3]) then
  return -2
end
local i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i + 2])
  redis.call(ARGV[i], KEYS[tonumber(ARGV[i + 1])], unpack(ARGV, i + 3, i + 2 + n))
  i = i + 3 + n
end
return 1
"""
# The lease holder takes over every entry other consumers left pending (XAUTOCLAIM, ids only)
# and drops the consumers left with nothing pending, in one step: a consumer that reads new
# entries in between cannot be dropped with them. Fenced: a zombie claims nothing.
# KEYS: stream, lease; ARGV: group, consumer, min idle ms, lease value ('' unfenced), limit.
# Returns the entries now pending for the consumer (its own included), or -1 (lease lost).
_CLAIM = """
if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[4] then return -1 end
local start, claimed, limit = '0-0', 0, tonumber(ARGV[5])
repeat
  local reply = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], start,
                           'COUNT', 1000, 'JUSTID')
  start = reply[1]
  claimed = claimed + #reply[2]
until start == '0-0' or claimed >= limit
if claimed > 0 then
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
    local who, pending
    for j = 1, #c, 2 do
      if c[j] == 'name' then who = c[j + 1] elseif c[j] == 'pending' then pending = c[j + 1] end
    end
    if who ~= ARGV[2] and pending == 0 then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], who)
    end
  end
end
return claimed
"""
# Count a round start for each chunk, if the caller still holds the lease. Each call has its
# own nonce, noted per chunk (field "<chunk id>:call"): the same call run again (RedisCluster's
# client re-sends a command whose reply was lost to a timeout) finds its nonce and counts
# nothing.
# KEYS: attempts, lease; ARGV: lease value ('' unfenced), nonce, chunk ids. Returns the counts.
_START_ATTEMPT = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return false end
local out = {}
for i = 3, #ARGV do
  local call = ARGV[i] .. ':call'
  if redis.call('HGET', KEYS[1], call) == ARGV[2] then
    out[#out + 1] = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  else
    redis.call('HSET', KEYS[1], call, ARGV[2])
    out[#out + 1] = redis.call('HINCRBY', KEYS[1], ARGV[i], 1)
  end
end
return out
"""
# Note a partitioned round's parts before writing them, if the caller still holds the lease.
# KEYS: partition_writes, lease; ARGV: "<version>:<token>", lease value ('' unfenced).
_RECORD_PARTS = """
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
"""
# Drop a lease if the given worker holds it (whatever its token): a dead worker's leases; the
# token counter moves on, so that worker cannot take it back (_RENEW).
_RELEASE_OF = """
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, string.find(v, ':', 1, true) + 1) == ARGV[1] then
  redis.call('INCR', KEYS[2])
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# Create an index on its slot in one step: config, version 0, the stream and its group, and
# the lease-token counter seeded from the creation time (a re-created index's tokens stay
# above every token of the one before).
# KEYS: config, version, stream, lease_token; ARGV: config JSON, group, token base.
# Returns 1, or 0 if it exists.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], 0)
redis.call('SET', KEYS[4], ARGV[3])
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[3], ARGV[2], '0', 'MKSTREAM')
end
return 1
"""
# A heartbeat: the worker's expiry (server time + ttl) and info, and expired workers dropped.
# KEYS: alive (zset), info (hash); ARGV: worker id, ttl ms, info JSON (empty: drop the worker).
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, w in ipairs(dead) do redis.call('HDEL', KEYS[2], w) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""
# Live workers: those whose expiry is after the server's now, with their info.
_LIVE_WORKERS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, w in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  out[#out + 1] = w
  out[#out + 1] = redis.call('HGET', KEYS[2], w) or '{}'
end
return out
"""
# An index at one moment, for dashboards and metrics: version, queue length, latest round
# record and the commit seconds of the version's round, dead letters, lease, config, the ids of
# the oldest and newest waiting chunks (only the ids leave the server, never a chunk's arrays)
# and the server's time in ms.
# KEYS: version, ingest stream, rounds, dead letters, lease, config, commit seconds, items,
# queued items, learn rate, refusals.
_SNAPSHOT = """
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
local version = redis.call('GET', KEYS[1]) or '0'
local t = redis.call('TIME')
return {version, redis.call('XLEN', KEYS[2]),
        redis.call('LINDEX', KEYS[3], -1) or false, redis.call('XLEN', KEYS[4]),
        redis.call('GET', KEYS[5]) or false, redis.call('GET', KEYS[6]) or false,
        first and first[1] or false, last and last[1] or false,
        tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000),
        redis.call('HGET', KEYS[7], version) or false, redis.call('GET', KEYS[8]) or false,
        redis.call('GET', KEYS[9]) or false, redis.call('GET', KEYS[10]) or false,
        redis.call('GET', KEYS[11]) or false}
"""
# Map a chunk's distinct client labels to internal class numbers, all or nothing: the label
# kind must match the index's (set by the first chunk), and new classes must fit max_classes.
# An index with rounds but no label kind predates class maps: {3} asks the caller to seed its
# map (ARGV seed = 1 is that seeding call, which skips the check).
# KEYS: label_kind, class_numbers, class_labels, version; ARGV: kind, max_classes, seed, label…
# Returns {0, number…}, {1, stored kind} (kind mismatch), {2, known, new} (too many classes)
# or {3} (not seeded).
_MAP_CLASSES = """
local kind = redis.call('GET', KEYS[1])
if kind and kind ~= ARGV[1] then return {1, kind} end
if not kind and ARGV[3] ~= '1' and tonumber(redis.call('GET', KEYS[4]) or '0') > 0 then
  return {3}
end
local numbers, missing = {}, 0
for i = 4, #ARGV do
  local n = redis.call('HGET', KEYS[2], ARGV[i])
  if n then numbers[i - 3] = tonumber(n) else numbers[i - 3] = false; missing = missing + 1 end
end
local known = redis.call('LLEN', KEYS[3])
if known + missing > tonumber(ARGV[2]) then return {2, known, missing} end
if not kind then redis.call('SET', KEYS[1], ARGV[1]) end
for i = 4, #ARGV do
  if not numbers[i - 3] then
    local n = redis.call('RPUSH', KEYS[3], ARGV[i]) - 1
    redis.call('HSET', KEYS[2], ARGV[i], n)
    numbers[i - 3] = n
  end
end
table.insert(numbers, 1, 0)
return numbers
"""
# Move one chunk from the ingest stream to the dead letters with its error history, if it is
# still there (a script: no WATCH on a stream every ingest writes to).
# Fenced like a commit: only the holder of the lease (ARGV lease value) moves chunks.
# KEYS: stream, dead_letters, attempts, attempt_errors, lease, queued items; ARGV: group,
# chunk id, reason, ts, lease value ('' = unfenced), the chunk's items, then the entry's
# field/value pairs. Returns the dead letter's id, or false.
_DEAD_LETTER = """
local id = ARGV[2]
if ARGV[5] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[5] then return false end
if #redis.call('XRANGE', KEYS[1], id, id) == 0 then return false end
if tonumber(ARGV[6]) > 0 and redis.call('DECRBY', KEYS[6], ARGV[6]) < 0 then
  redis.call('SET', KEYS[6], 0)
end
local entry = {}
for i = 7, #ARGV do entry[#entry + 1] = ARGV[i] end
for _, pair in ipairs({{'dl:chunk_id', id}, {'dl:reason', ARGV[3]},
    {'dl:attempts', redis.call('HGET', KEYS[3], id) or '0'},
    {'dl:history', redis.call('HGET', KEYS[4], id) or '[]'}, {'dl:ts', ARGV[4]}}) do
  entry[#entry + 1] = pair[1]; entry[#entry + 1] = pair[2]
end
local dead = redis.call('XADD', KEYS[2], '*', unpack(entry))
redis.call('XACK', KEYS[1], ARGV[1], id)
redis.call('XDEL', KEYS[1], id)
redis.call('HDEL', KEYS[3], id, id .. ':call')
redis.call('HDEL', KEYS[4], id)
return dead
"""
# The stream's length; an empty stream's queued-item count is set to 0 (a stream queued before
# the count existed would otherwise leave it below the truth). KEYS: stream, queued items.
_QUEUE_DEPTH = """
local depth = redis.call('XLEN', KEYS[1])
if depth == 0 and (tonumber(redis.call('GET', KEYS[2]) or '0')) ~= 0 then
  redis.call('SET', KEYS[2], 0)
end
return depth
"""
# Give a lease back; the token counter moves past it, so the lease, lapsed or not, can never
# be taken back by _RENEW. KEYS: lease, lease_token; ARGV: lease value, token.
_RELEASE = """
local held = redis.call('GET', KEYS[1])
if held ~= ARGV[1] and held then return 0 end
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('INCR', KEYS[2]) end
if held then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class Lease:
    """An index's round lease held by ``worker`` under fencing token ``token`` (strictly
    increasing per index). Only the holder's commits, claims and dead-letterings go through."""

    name: str
    worker: str
    token: int
    ttl_ms: int

    @property
    def value(self) -> str:
        return f"{self.token}:{self.worker}"


@dataclass(frozen=True)
class IndexSnapshot:
    """One index at one moment: committed version, chunks waiting, the latest round record,
    dead letters, the worker holding its round lease (None between rounds), its config, when
    (Redis server time, ms) the oldest and newest waiting chunks were queued, and the live items
    (None for an index whose rounds predate the count), the items waiting, the recent rounds'
    items per second (None before a round) and the ingests refused for backlog."""

    version: int
    queue_depth: int
    last: dict[str, Any] | None
    dead_letters: int
    lease_holder: str | None
    config: dict[str, Any] | None
    oldest_waiting_ms: int | None
    newest_waiting_ms: int | None
    now_ms: int
    items: int | None = None
    queued_items: int = 0
    learn_rate: float | None = None
    refusals: int = 0

    @property
    def queue_lag_seconds(self) -> float:
        """How long the oldest waiting chunk has waited (0 when none waits)."""
        if self.oldest_waiting_ms is None:
            return 0.0
        return max(0.0, (self.now_ms - self.oldest_waiting_ms) / 1000)


def _queued_items(raw: Any) -> int:
    """The stored queued-item count (0 when unset; never below 0)."""
    return max(0, int(raw or 0))


def _learn_rate(raw: Any) -> float | None:
    """The stored items/s of the recent rounds (None before a round)."""
    return None if raw is None else float(raw)


def entry_items(fields: dict[bytes, bytes]) -> int:
    """The items of a queued chunk's stream entry, from its features' header alone (0 for an
    entry whose features cannot be read)."""
    try:
        shape = array_shape(fields[b"features"])
    except (KeyError, CodecError):
        return 0
    return int(shape[0]) if shape else 0


def _entry_ms(entry_id: bytes | None) -> int | None:
    """The queue time (ms) in a stream entry id ``<ms>-<seq>``."""
    return None if entry_id is None else int(entry_id.split(b"-", 1)[0])


def _fence(lease: Lease | None) -> str:
    """The lease value a fenced script compares with the index's lease ('' = unfenced)."""
    return lease.value if lease is not None else ""


@dataclass(frozen=True)
class RoundCommit:
    """Everything one round makes visible at once (``IndexStore.commit_round``).

    ``ack_ids``: the stream entries the round consumed (acknowledged and deleted);
    ``query_chunks``: held-out query chunks to keep (chunk id → arrays);
    ``state``: the method's state arrays (replace the stored state; None keeps it);
    ``segment``: the round's code-store segment (codes per target, ids, labels): with one the
    version moves to ``expected_version + 1``, without one the commit only stores queries and
    acknowledges; ``record``: the round record (JSON);
    ``model``: (model version, arrays) of a new, immutable model version;
    ``projection``: P of the new version (methods with a projection);
    ``centers``: the round's hash centers Y (into the hash-center memory);
    ``delete_epoch``: the item deletes the segment was filtered against (the commit is refused
    with :class:`DeletesLanded` if more landed since; None: no check);
    ``items``: the index's live items once the commit lands (None: left as it is);
    ``ack_items``: the items of the acknowledged chunks (leave the queued-item count).
    """

    ack_ids: list[str] = field(default_factory=list)
    query_chunks: dict[str, Arrays] = field(default_factory=dict)
    state: Arrays | None = None
    segment: Arrays | None = None
    record: dict[str, Any] | None = None
    model: tuple[int, Arrays] | None = None
    projection: np.ndarray[Any, Any] | None = None
    centers: np.ndarray[Any, Any] | None = None
    delete_epoch: int | None = None
    items: int | None = None
    ack_items: int = 0


class DeletesLanded(RuntimeError):
    """A round's commit was refused because item deletes landed after the worker filtered its
    segment against them (``RoundCommit.delete_epoch``): filter again and commit again."""


_MAX_OP_ARGS = 1000  # arguments per command of the commit script (Lua's unpack limit ~8000)


def _commit_ops(k: IndexKeys, expected_version: int, commit: RoundCommit
                ) -> tuple[list[str], list[Any]]:
    """KEYS and the op list (name, key index, n, args…) of :data:`_COMMIT` for ``commit``."""
    keys = [k.version, k.lease, k.delete_epoch, k.lease_token]
    ops: list[Any] = []

    def op(command: str, key: str, args: list[Any], pairs: bool = False,
           head: list[Any] | None = None) -> None:
        if key not in keys:
            keys.append(key)
        step = _MAX_OP_ARGS - (_MAX_OP_ARGS % 2 if pairs else 0)
        for i in range(0, max(len(args), 1), step):
            part = (head or []) + args[i:i + step]
            ops.extend([command, keys.index(key) + 1, len(part), *part])

    def mapping(arrays: dict[str, Any]) -> list[Any]:
        return [x for item in encode_arrays(arrays).items() for x in item]

    new_version = expected_version + 1
    if commit.state is not None:
        op("DEL", k.state, [])
        op("HSET", k.state, mapping(commit.state), pairs=True)
    if commit.projection is not None:
        op("SET", k.projection(new_version), [encode_array(commit.projection)])
    if commit.centers is not None:
        op("HSET", k.center_memory, [str(new_version), encode_array(commit.centers)])
    if commit.model is not None:
        model_version, arrays = commit.model
        op("HSET", k.deep_model(model_version), mapping(arrays), pairs=True)
    if commit.segment is not None:
        op("HSET", k.segment(new_version), mapping(commit.segment), pairs=True)
        op("SET", k.version, [new_version])
        if commit.items is not None:
            op("SET", k.items, [commit.items])
    for chunk_id, arrays in commit.query_chunks.items():
        op("HSET", k.queries, [x for a, v in arrays.items()
                               for x in (f"{chunk_id}:{a}", encode_array(v))], pairs=True)
    if commit.record is not None:
        op("RPUSH", k.rounds, [json.dumps(commit.record)])
    if commit.ack_ids:
        op("XACK", k.stream, list(commit.ack_ids), head=[GROUP])
        op("XDEL", k.stream, list(commit.ack_ids))
        op("HDEL", k.attempts, [f for cid in commit.ack_ids for f in (cid, f"{cid}:call")])
        op("HDEL", k.attempt_errors, list(commit.ack_ids))
    if commit.ack_items:
        op("DECRBY", k.queued_items, [commit.ack_items])
    return keys, ops


class ReplyLost(redis.TimeoutError):
    """Every attempt of :meth:`IndexStore.enqueue_once` lost Redis's reply (a timeout or a
    dropped connection): the chunk may or may not be queued under ``key``; the same call with
    the same key settles it exactly once. A :class:`redis.TimeoutError`, so a caller that
    does not catch it still answers 503 "not known"."""

    def __init__(self, key: str, attempts: int) -> None:
        super().__init__(f"Redis's reply was lost {attempts} times in a row")
        self.key = key
        self.attempts = attempts


# enqueue_once: tries of its script when the reply is lost, and the pauses between them.
ENQUEUE_ATTEMPTS = 3
_ENQUEUE_PAUSES_S = (0.05, 0.25)


class ClassMapError(ValueError):
    """A chunk's labels do not fit the index's class map (``reason``: kind or capacity)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class IndexStore:
    """Redis persistence of every index under ``prefix``."""

    def __init__(self, client: redis.Redis, prefix: str = "hs") -> None:
        # redis-py's reply types are unions of bytes/str/awaitables; replies here are bytes.
        self.r: Any = client
        self.prefix = prefix
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._take_lease = client.register_script(_TAKE_LEASE)
        self._enqueue_once = client.register_script(_ENQUEUE_ONCE)
        self._release_of = client.register_script(_RELEASE_OF)
        self._create = client.register_script(_CREATE)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._commit_script = client.register_script(_COMMIT)
        self._claim = client.register_script(_CLAIM)
        self._record_parts = client.register_script(_RECORD_PARTS)
        self._start_attempt = client.register_script(_START_ATTEMPT)
        self._live_workers = client.register_script(_LIVE_WORKERS)
        self._snapshot = client.register_script(_SNAPSHOT)
        self._map_classes = client.register_script(_MAP_CLASSES)
        self._dead_letter = client.register_script(_DEAD_LETTER)
        self._queue_depth = client.register_script(_QUEUE_DEPTH)
        self.deletes = ItemDeletes(client, prefix)

    def keys(self, name: str) -> IndexKeys:
        return IndexKeys(self.prefix, name)

    # --- registry -------------------------------------------------------------------------
    def create_index(self, name: str, config: dict[str, Any]) -> bool:
        """Create the index (config, version 0, stream and group in one script on its slot),
        then list it in the registry; False when it exists already with another config. The
        same config again is this create re-sent (RedisCluster's client re-sends a command
        whose reply was lost; a config carries its creation stamp) and is answered True, so
        a create that succeeded is never answered "exists". A create that died between the two
        left an index nobody lists: the next create of the name lists it (and answers False:
        it exists, with its first config)."""
        k = self.keys(name)
        # ms since 1970 × 2^10 (~1.8e15): exact in Lua's doubles (< 2^53) for centuries
        token_base = int(time.time() * 1000) << 10
        created = bool(self._create(keys=[k.config, k.version, k.stream, k.lease_token],
                                    args=[json.dumps(config), GROUP, token_base]))
        self.r.sadd(registry_key(self.prefix), name)  # last: listed once complete
        if not self.r.exists(k.config):  # a delete ran in between: do not list what it removed
            self.r.srem(registry_key(self.prefix), name)
            return False
        return created

    def list_indexes(self) -> list[str]:
        return sorted(m.decode() for m in self.r.smembers(registry_key(self.prefix)))

    def config(self, name: str) -> dict[str, Any] | None:
        raw = self.r.get(self.keys(name).config)
        return None if raw is None else dict(json.loads(raw))

    def delete_index(self, name: str) -> bool:
        """Unlist the index first, then remove its partitions' segment parts (each on its
        slot), then every key on its own slot in one MULTI that WATCHes what it read (the
        version, the parts written, the config): a commit landing meanwhile makes it start
        over, so no key it wrote is left behind. A worker mid-round fails its commit (the
        version and the lease it checks are gone); a delete cut off half-way is finished by
        the next (the config outlives the parts)."""
        k = self.keys(name)
        removed = bool(self.r.srem(registry_key(self.prefix), name))
        for _ in range(100):
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(k.version, k.partition_writes, k.config)
                    raw = pipe.get(k.config)
                    partitions = int(json.loads(raw).get("partitions", 1)) if raw else 1
                    writes = [m.decode() for m in pipe.smembers(k.partition_writes)]
                    current = pipe.get(k.version)
                    version = int(current) if current is not None else 0
                    self._delete_parts(k, writes, partitions)
                    doomed = k.all() + [k.projection(v) for v in range(1, version + 1)]
                    doomed += [k.segment(v) for v in range(1, version + 1)]
                    doomed += [k.deep_model(v) for v in range(1, version + 1)]
                    pipe.multi()
                    for i in range(0, len(doomed), 512):
                        pipe.delete(*doomed[i:i + 512])
                    existed = pipe.execute()
                    return removed or any(existed)
                except redis.WatchError:
                    continue
        raise RuntimeError(f"index {name!r}: commits kept landing during its delete")

    def _delete_parts(self, k: IndexKeys, writes: list[str], partitions: int) -> None:
        """Delete the partition parts named by ``writes`` (``<version>:<token>``)."""
        parts: dict[int, list[str]] = {}
        for write in writes:
            v, _, token = write.partition(":")
            for p in range(partitions):
                parts.setdefault(p, []).append(k.partition_segment(p, int(v), int(token)))
        for keys in parts.values():
            for i in range(0, len(keys), 512):
                with self.r.pipeline(transaction=True) as pipe:  # one partition: one slot
                    pipe.delete(*keys[i:i + 512])
                    pipe.execute()

    # --- ingest queue ---------------------------------------------------------------------
    def enqueue(self, name: str, fields: dict[str, Any], items: int = 0) -> str:
        """Append a chunk of ``items`` items to the index's stream and count them queued, in
        one MULTI; the entry id is the chunk id. Field values may be any bytes-like object
        (redis-py sends a large one as it is, without copying it into the command)."""
        k = self.keys(name)
        with self.r.pipeline(transaction=True) as pipe:
            pipe.xadd(k.stream, fields)
            pipe.incrby(k.queued_items, items)
            chunk_id, _ = pipe.execute()
        return str(chunk_id.decode())

    def enqueue_once(self, name: str, fields: dict[str, Any], items: int, key: str,
                     answer: str, lifetime_s: float, now: float | None = None,
                     attempts: int = ENQUEUE_ATTEMPTS) -> tuple[bool, str]:
        """:meth:`enqueue` under an idempotency key, in one script: (True, chunk id) when
        queued, the key recorded with ``answer`` for ``lifetime_s``; (False, the first
        request's record "<chunk id> <answer>") when the key was seen and has not expired.

        A lost reply (:class:`redis.TimeoutError` or :class:`redis.ConnectionError`: the
        script may or may not have run) is retried with the same key and arguments, up to
        ``attempts`` runs in all, a short pause between: the script records the key in the
        same atomic step as the XADD, so a retry either queues the chunk (the lost run never
        ran) or finds the record (it did), and the chunk is queued exactly once either way.
        That holds in either order: a run fully sent on the dropped connection can still
        execute after the retry's, on another connection; whichever runs second finds the
        key and writes nothing. A retry that finds the record this call wrote (its ``answer``,
        which callers make unique) answers (True, chunk id) as a first run would. When every
        run's reply is lost, :class:`ReplyLost` (with the key) is raised."""
        k = self.keys(name)
        at = time.time() if now is None else now
        pairs = [x for field_value in fields.items() for x in field_value]
        keys = [k.stream, k.queued_items, k.ingest_keys, k.ingest_key_expiry]
        args = [key, f"{at:.3f}", f"{at + lifetime_s:.3f}", items, answer, *pairs]
        for attempt in range(attempts):
            try:
                queued, value = self._enqueue_once(keys=keys, args=args)
            except (redis.TimeoutError, redis.ConnectionError) as exc:
                if attempt + 1 >= attempts:
                    raise ReplyLost(key, attempts) from exc
                time.sleep(_ENQUEUE_PAUSES_S[min(attempt, len(_ENQUEUE_PAUSES_S) - 1)])
                continue
            found = str(value.decode())
            chunk_id, _, kept = found.partition(" ")
            if not queued and attempt and kept == answer:
                return True, chunk_id  # an earlier run of this call queued it; its reply lost
            return bool(queued), found
        raise ValueError("attempts must be at least 1")

    def ingest_record(self, name: str, key: str, now: float | None = None) -> str | None:
        """The record "<chunk id> <answer>" of an ingest under ``key`` (None: not seen, or
        expired)."""
        k = self.keys(name)
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hget(k.ingest_keys, key)
            pipe.zscore(k.ingest_key_expiry, key)
            value, expires = pipe.execute()
        at = time.time() if now is None else now
        if value is None or expires is None or float(expires) <= at:
            return None
        return str(value.decode())

    def backlog(self, name: str) -> tuple[int, float | None]:
        """Items queued and the recent rounds' items per second (None before a round), in one
        MGET."""
        k = self.keys(name)
        queued, rate = self.r.mget([k.queued_items, k.learn_rate])
        return _queued_items(queued), _learn_rate(rate)

    def count_refusal(self, name: str) -> int:
        """Count one ingest refused for backlog; the new total."""
        return int(self.r.incr(self.keys(name).refusals))

    def idle_queue_depth(self, name: str) -> int:
        """:meth:`queue_depth`, and an empty stream's queued-item count set to 0 (one
        script): what a worker polls."""
        k = self.keys(name)
        return int(self._queue_depth(keys=[k.stream, k.queued_items]))

    def read_chunks(self, name: str, consumer: str, count: int, new: bool,
                    block_ms: int | None = None) -> list[tuple[str, dict[bytes, bytes]]]:
        """This consumer's pending entries (``new=False``) or unseen ones (``new=True``)."""
        reply = self.r.xreadgroup(GROUP, consumer, {self.keys(name).stream: ">" if new else "0"},
                                  count=count, block=block_ms if new else None)
        if not reply:
            return []
        return [(eid.decode(), fields) for eid, fields in reply[0][1] if fields]

    def read_pending_page(self, name: str, consumer: str, count: int, after: str
                          ) -> tuple[list[tuple[str, dict[bytes, bytes]]], str | None]:
        """Up to ``count`` of this consumer's pending entries after id ``after`` (exclusive;
        "0": from the first), and the id to read the next page after (None: none left).
        Entries deleted while pending are skipped."""
        reply = self.r.xreadgroup(GROUP, consumer, {self.keys(name).stream: after},
                                  count=count)
        raw = reply[0][1] if reply else []
        entries = [(eid.decode(), fields) for eid, fields in raw if fields]
        return entries, (raw[-1][0].decode() if len(raw) == count else None)

    def claim_stale(self, name: str, consumer: str, idle_ms: int, limit: int = 100_000,
                    lease: Lease | None = None) -> int:
        """Take over entries other consumers read but never acknowledged (idle at least
        ``idle_ms``), up to ``limit``, and drop the consumers left with nothing pending (one
        per dead worker would otherwise stay in the group for good), in one script; how many
        pending entries are now ``consumer``'s (its own included), or -1 when ``lease`` is no
        longer the caller's. The lease holder claims with ``idle_ms=0``: whoever read them
        before lost the lease and can no longer commit."""
        k = self.keys(name)
        return int(self._claim(keys=[k.stream, k.lease],
                               args=[GROUP, consumer, idle_ms,
                                     _fence(lease), limit]))

    def queue_depth(self, name: str) -> int:
        """Chunks accepted and not yet committed (acked entries are deleted)."""
        return int(self.r.xlen(self.keys(name).stream))

    def next_ids(self, name: str, count: int) -> int:
        """Reserve ``count`` service-assigned item ids; returns the first."""
        return int(self.r.incrby(self.keys(name).next_id, count)) - count

    # --- reading state --------------------------------------------------------------------
    def version_and_config(self, name: str) -> tuple[int, dict[str, Any] | None]:
        """Version and config read together (one round trip, one consistent moment)."""
        k = self.keys(name)
        version, config = self.r.mget([k.version, k.config])
        return (int(version) if version is not None else 0,
                None if config is None else dict(json.loads(config)))

    def search_state(self, name: str) -> tuple[int, int, dict[str, Any] | None]:
        """Version, delete epoch and config read together (one MGET, one moment): what a search
        checks its replica against."""
        k = self.keys(name)
        version, epoch, config = self.r.mget([k.version, k.delete_epoch, k.config])
        return (int(version) if version is not None else 0,
                int(epoch) if epoch is not None else 0,
                None if config is None else dict(json.loads(config)))

    def item_count(self, name: str) -> int | None:
        """Live items (None for an index whose rounds predate the count)."""
        raw = self.r.get(self.keys(name).items)
        return None if raw is None else int(raw)

    def oldest_queued(self, name: str) -> str | None:
        """The id of the oldest chunk still in the ingest stream (None when it is empty):
        chunks accepted before it were committed or dead-lettered."""
        first = self.r.xrange(self.keys(name).stream, "-", "+", count=1)
        return first[0][0].decode() if first else None

    def snapshot(self, name: str) -> IndexSnapshot:
        """The index at one moment (one script on its slot): see :class:`IndexSnapshot`."""
        k = self.keys(name)
        (version, depth, last, dead, lease, config, oldest, newest, now_ms, commit, items,
         queued, rate, refused) = self._snapshot(
            keys=[k.version, k.stream, k.rounds, k.dead_letters, k.lease, k.config,
                  k.commit_seconds, k.items, k.queued_items, k.learn_rate, k.refusals])
        holder = None if lease is None else lease.decode().partition(":")[2]
        record = None if last is None else dict(json.loads(last))
        if record is not None and commit is not None and record.get("round") == int(version):
            record.setdefault("seconds", {})["commit"] = float(commit)  # as rounds() merges it
        return IndexSnapshot(
            version=int(version), queue_depth=int(depth), last=record, dead_letters=int(dead),
            lease_holder=holder, config=None if config is None else dict(json.loads(config)),
            oldest_waiting_ms=_entry_ms(oldest), newest_waiting_ms=_entry_ms(newest),
            now_ms=int(now_ms), items=None if items is None else int(items),
            queued_items=_queued_items(queued), learn_rate=_learn_rate(rate),
            refusals=int(refused or 0))

    def version(self, name: str) -> int:
        raw = self.r.get(self.keys(name).version)
        return int(raw) if raw is not None else 0

    def load_state(self, name: str, fields: list[str] | None = None) -> Arrays:
        k = self.keys(name).state
        if fields is None:
            return decode_arrays(self.r.hgetall(k))
        values = self.r.hmget(k, fields)
        return {f: decode_array(v) for f, v in zip(fields, values, strict=True) if v is not None}

    def state_field_sizes(self, name: str, fields: list[str]) -> dict[str, int]:
        """Stored bytes of each state field (0: absent), in one round trip."""
        k = self.keys(name).state
        with self.r.pipeline(transaction=False) as pipe:
            for f in fields:
                pipe.hstrlen(k, f)
            return dict(zip(fields, (int(n) for n in pipe.execute()), strict=True))

    def load_projection(self, name: str, version: int) -> np.ndarray[Any, Any] | None:
        raw = self.r.get(self.keys(name).projection(version))
        return None if raw is None else decode_array(raw)

    def load_segment(self, name: str, round_: int) -> Arrays:
        """The code-store segment of one version; a partitioned index's parts joined."""
        raw = decode_arrays(self.r.hgetall(self.keys(name).segment(round_)))
        if "partitions" not in raw:
            return raw
        return join_parts(list(self.load_segment_parts(name, round_, manifest=raw).values()))

    def load_segment_parts(self, name: str, round_: int, partitions: list[int] | None = None,
                           manifest: Arrays | None = None) -> dict[int, Arrays]:
        """Partition → its part of one version's segment (``partitions``: only these). An
        unpartitioned index has one partition, 0, holding the whole segment."""
        k = self.keys(name)
        if manifest is None:
            manifest = decode_arrays(self.r.hgetall(k.segment(round_)))
        if "partitions" not in manifest:
            return {0: manifest} if partitions is None or 0 in partitions else {}
        token = int(manifest["lease_token"])
        wanted = range(int(manifest["partitions"])) if partitions is None else partitions
        return {p: decode_arrays(self.r.hgetall(k.partition_segment(p, round_, token)))
                for p in wanted}

    def load_center_memory(self, name: str) -> dict[int, np.ndarray[Any, Any]]:
        raw = self.r.hgetall(self.keys(name).center_memory)
        return {int(k): decode_array(v) for k, v in raw.items()}

    def load_centers(self, name: str, rounds: list[int]) -> dict[int, np.ndarray[Any, Any]]:
        """Y of the given rounds from the hash-center memory (missing rounds are skipped)."""
        if not rounds:
            return {}
        values = self.r.hmget(self.keys(name).center_memory, [str(r) for r in rounds])
        return {r: decode_array(v) for r, v in zip(rounds, values, strict=True) if v is not None}

    def load_queries(self, name: str) -> dict[str, Arrays]:
        """Held-out query chunks: chunk id → {features, labels}."""
        out: dict[str, Arrays] = {}
        for key, value in self.r.hgetall(self.keys(name).queries).items():
            chunk_id, _, array = key.decode().rpartition(":")
            out.setdefault(chunk_id, {})[array] = decode_array(value)
        return out

    def rounds(self, name: str, start: int = 0, stop: int = -1) -> list[dict[str, Any]]:
        """Round records (LRANGE semantics), each with its commit seconds when known."""
        k = self.keys(name)
        records = [json.loads(r) for r in self.r.lrange(k.rounds, start, stop)]
        if records:
            commits = self.r.hmget(k.commit_seconds, [str(r["round"]) for r in records])
            for record, commit in zip(records, commits, strict=True):
                if commit is not None:
                    record.setdefault("seconds", {})["commit"] = float(commit)
        return records

    def record_commit_seconds(self, name: str, round_: int, seconds: float,
                              learn_rate: float | None = None) -> None:
        """The round's commit seconds and (``learn_rate``) the items per second of the recent
        rounds, in one MULTI."""
        k = self.keys(name)
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(k.commit_seconds, str(round_), f"{seconds:.6f}")
            if learn_rate is not None:
                pipe.set(k.learn_rate, f"{learn_rate:.3f}")
            pipe.execute()


    # --- the round's commit ---------------------------------------------------------------
    def commit_round(self, name: str, expected_version: int, commit: RoundCommit,
                     lease: Lease | None = None, partitions: int = 1) -> bool:
        """Commit a round atomically; False when the version moved (another worker won) or,
        with a ``lease``, when the lease is no longer the caller's (fencing: it lapsed and
        another worker may hold it). Workers always pass their lease; ``None`` is for tools
        and tests that write an index nobody else runs.

        One script on the index's slot checks the version and the lease and then writes
        everything (:data:`_COMMIT`): a client that retries it after a lost reply finds the
        version moved and writes nothing, and a lease renewal cannot abort it (a WATCH would).
        A ``commit.segment`` makes a new version (the round's codes); without one only the
        query chunks are stored and the chunks acknowledged. With ``partitions`` > 1 the
        segment's parts are written first, each on its partition's slot under the lease's
        token (they are invisible until the commit's manifest names that token), and the
        commit writes the manifest in the segment's place. With ``commit.delete_epoch`` set,
        raises :class:`DeletesLanded` (nothing written) when item deletes landed since.
        """
        if commit.segment is not None and partitions > 1:
            parted = self._write_parts(name, expected_version + 1, commit, partitions, lease)
            if parted is None:
                return False
            commit = parted
        keys, args = _commit_ops(self.keys(name), expected_version, commit)
        epoch = "" if commit.delete_epoch is None else commit.delete_epoch
        reply = int(self._commit_script(keys=keys, args=[
            expected_version, _fence(lease), epoch, *args]))
        if reply == -2:
            raise DeletesLanded(f"index {name!r}: item deletes landed after delete epoch "
                                f"{commit.delete_epoch}")
        return reply == 1

    def _write_parts(self, name: str, version: int, commit: RoundCommit, partitions: int,
                     lease: Lease | None) -> RoundCommit | None:
        """Write the segment's partition parts; None when the lease is no longer ours."""
        k = self.keys(name)
        assert commit.segment is not None
        token = lease.token if lease is not None else 0
        # recorded (fenced) before the parts exist, so deleting the index finds even the parts
        # of a round that then loses its commit
        if not self._record_parts(keys=[k.partition_writes, k.lease],
                                  args=[f"{version}:{token}",
                                        _fence(lease)]):
            return None
        parts = split_segment(commit.segment, partitions)
        for p, part in parts.items():
            key = k.partition_segment(p, version, token)
            with self.r.pipeline(transaction=True) as pipe:  # the part's slot
                pipe.delete(key)
                pipe.hset(key, mapping=encode_arrays(part))
                pipe.execute()
        manifest = {"partitions": np.asarray(partitions), "lease_token": np.asarray(token),
                    "counts": np.asarray([len(parts[p]["ids"]) for p in range(partitions)]),
                    "version": np.asarray(version)}
        return dataclasses.replace(commit, segment=manifest)

    def load_deep_model(self, name: str, model_version: int) -> Arrays:
        """The arrays of one stored model version of a method that keeps one ({} if none)."""
        return decode_arrays(self.r.hgetall(self.keys(name).deep_model(model_version)))

    # --- class map -----------------------------------------------------------------------
    def map_classes(self, name: str, labels: list[str], kind: str, max_classes: int,
                    seed: bool = False) -> list[int]:
        """Internal class numbers of ``labels`` (distinct, as text), new ones assigned in order.

        Atomic: on :class:`ClassMapError` (another label kind, more than ``max_classes``
        classes, or — reason "unseeded" — an index from before class maps whose map must first
        be seeded by a call with ``seed=True``) nothing is written."""
        if not labels:
            return []
        k = self.keys(name)
        reply = self._map_classes(keys=[k.label_kind, k.class_numbers, k.class_labels,
                                        k.version],
                                  args=[kind, max_classes, int(seed), *labels])
        status = int(reply[0])
        if status == 3:
            raise ClassMapError("the index predates class maps; seed its map first", "unseeded")
        if status == 1:
            stored = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
            raise ClassMapError(f"this index's labels are {stored} values; this chunk sends "
                                f"{kind} values (one label type per index)", "kind")
        if status == 2:
            raise ClassMapError(f"the index knows {int(reply[1])} classes and this chunk adds "
                                f"{int(reply[2])}: more than max_classes = {max_classes}",
                                "capacity")
        return [int(v) for v in reply[1:]]

    def class_labels(self, name: str, start: int = 0) -> tuple[str | None, list[bytes]]:
        """The label kind and the client labels of internal classes ``start`` onwards."""
        k = self.keys(name)
        pipe = self.r.pipeline(transaction=True)
        pipe.get(k.label_kind)
        pipe.lrange(k.class_labels, start, -1)
        kind, labels = pipe.execute()
        return (None if kind is None else kind.decode()), list(labels)

    # --- failed rounds and dead letters ---------------------------------------------------
    def start_attempt(self, name: str, chunk_ids: list[str], lease: Lease | None = None
                      ) -> dict[str, int] | None:
        """Count one more round started with each chunk; returns the counts so far, or None
        (nothing counted) when ``lease`` is no longer the caller's: a zombie's round does not
        use up the chunks' attempts.

        Counted before the round runs, so a worker that dies mid-round has used an attempt;
        counted once per call, even when the client re-sends it after a lost reply."""
        if not chunk_ids:
            return {}
        k = self.keys(name)
        counts = self._start_attempt(keys=[k.attempts, k.lease],
                                     args=[_fence(lease), uuid.uuid4().hex, *chunk_ids])
        if counts is None:
            return None
        return dict(zip(chunk_ids, (int(v) for v in counts), strict=True))

    def attempts(self, name: str, chunk_ids: list[str]) -> dict[str, int]:
        """Rounds started and not committed, per chunk (0 when none)."""
        if not chunk_ids:
            return {}
        values = self.r.hmget(self.keys(name).attempts, chunk_ids)
        return {cid: int(v) if v is not None else 0
                for cid, v in zip(chunk_ids, values, strict=True)}

    def record_failure(self, name: str, chunk_ids: list[str], error: dict[str, Any],
                       keep: int = 10) -> None:
        """Append ``error`` to the failure history of each chunk still queued (the newest
        ``keep`` are kept)."""
        k = self.keys(name)
        # A commit that wrote and then raised (a connection lost after EXEC) has acknowledged
        # its chunks: only those still in the stream get a history, or it would never be freed.
        pipe = self.r.pipeline(transaction=False)
        for cid in chunk_ids:
            pipe.xrange(k.stream, cid, cid)
        chunk_ids = [cid for cid, found in zip(chunk_ids, pipe.execute(), strict=True) if found]
        if not chunk_ids:
            return
        histories = [[] if raw is None else list(json.loads(raw))
                     for raw in self.r.hmget(k.attempt_errors, chunk_ids)]
        self.r.hset(k.attempt_errors, mapping={
            cid: json.dumps((history + [error])[-keep:])
            for cid, history in zip(chunk_ids, histories, strict=True)})

    def dead_letter(self, name: str, chunk_id: str, fields: dict[bytes, bytes],
                    reason: str, lease: Lease | None = None) -> str | None:
        """Move a chunk from the ingest stream to the dead-letter stream with its error and
        history, and its items out of the queued count, atomically; None when the chunk was
        no longer pending (committed) or the ``lease`` is no longer the caller's."""
        k = self.keys(name)
        pairs = [part for item in fields.items() for part in item]
        moved = self._dead_letter(
            keys=[k.stream, k.dead_letters, k.attempts, k.attempt_errors, k.lease,
                  k.queued_items],
            args=[GROUP, chunk_id, reason, f"{time.time():.3f}",
                  _fence(lease), entry_items(fields), *pairs])
        return None if moved is None else str(moved.decode())

    def dead_letters(self, name: str, count: int = 100,
                     after: str = "-") -> list[tuple[str, dict[bytes, bytes]]]:
        """Dead-lettered entries, oldest first (``after``: an exclusive start id)."""
        start = "-" if after == "-" else f"({after}"
        reply = self.r.xrange(self.keys(name).dead_letters, start, "+", count=count)
        return [(eid.decode(), fields) for eid, fields in reply]

    def dead_letter_count(self, name: str) -> int:
        return int(self.r.xlen(self.keys(name).dead_letters))

    def requeue_dead_letter(self, name: str, entry_id: str) -> str | None:
        """Put a dead-lettered chunk back on the ingest stream (a new chunk id, attempts from
        zero) and remove it from the dead letters, atomically; None when there is no such
        entry."""
        k = self.keys(name)
        with self.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(k.dead_letters)
                found = pipe.xrange(k.dead_letters, entry_id, entry_id)
                if not found:
                    return None
                fields = {f: v for f, v in found[0][1].items() if not f.startswith(b"dl:")}
                pipe.multi()
                pipe.xadd(k.stream, fields)
                pipe.incrby(k.queued_items, entry_items(fields))
                pipe.xdel(k.dead_letters, entry_id)
                return str(pipe.execute()[0].decode())
            except redis.WatchError:
                return self.requeue_dead_letter(name, entry_id)

    def delete_dead_letter(self, name: str, entry_id: str) -> bool:
        return bool(self.r.xdel(self.keys(name).dead_letters, entry_id))

    # --- round leases and worker liveness -------------------------------------------------
    def take_lease(self, name: str, worker: str, ttl_ms: int) -> Lease | None:
        """The index's round lease with a new fencing token, or None while another holds it."""
        token = self._take_lease(keys=[self.keys(name).lease, self.keys(name).lease_token],
                                 args=[worker, ttl_ms])
        return None if token is None else Lease(name, worker, int(token), ttl_ms)

    def renew_lease(self, lease: Lease) -> bool:
        """Extend the lease by its TTL if still held, or take it back if it lapsed (a worker
        starved past its TTL) while no other lease was taken; False once another was."""
        k = self.keys(lease.name)
        return bool(self._renew(keys=[k.lease, k.lease_token], args=[lease.value, lease.ttl_ms]))

    def release_lease(self, lease: Lease) -> None:
        """Give the lease back (compare-and-delete: never someone else's); it can no longer
        be renewed."""
        k = self.keys(lease.name)
        self._release(keys=[k.lease, k.lease_token], args=[lease.value, lease.token])

    def lease_holder(self, name: str) -> tuple[int, str] | None:
        """(token, worker) of the index's current lease, or None."""
        raw = self.r.get(self.keys(name).lease)
        if raw is None:
            return None
        token, _, worker = raw.decode().partition(":")
        return int(token), worker

    def release_leases_of(self, worker: str) -> list[str]:
        """Drop every lease ``worker`` holds (a worker known dead); the indexes it held.
        One script call per index: each lease is on its index's slot."""
        return [name for name in self.list_indexes()
                if self._release_of(keys=[self.keys(name).lease, self.keys(name).lease_token],
                                    args=[worker])]

    def heartbeat(self, worker_id: str, ttl_s: float, info: dict[str, Any] | None = None
                  ) -> None:
        """Mark the worker alive for ``ttl_s`` (server time); ``info`` (its kernel, backend)
        rides along. Expired workers are dropped on the way."""
        self._heartbeat(keys=[workers_alive_key(self.prefix), workers_info_key(self.prefix)],
                        args=[worker_id, int(ttl_s * 1000), json.dumps(info or {})])

    def drop_heartbeat(self, worker_id: str) -> bool:
        """Forget a worker known to be dead at once (its heartbeat would last its TTL)."""
        return bool(self._heartbeat(keys=[workers_alive_key(self.prefix),
                                          workers_info_key(self.prefix)],
                                    args=[worker_id, 0, ""]))

    def count_restart(self) -> int:
        """Count one worker restart; the new total."""
        return int(self.r.incr(supervisor_restarts_key(self.prefix)))

    def restarts(self) -> int:
        """Worker restarts counted so far (every supervisor on this prefix)."""
        raw = self.r.get(supervisor_restarts_key(self.prefix))
        return int(raw) if raw is not None else 0

    def workers_alive(self) -> int:
        return len(self.workers())

    def workers(self) -> dict[str, dict[str, Any]]:
        """Live workers: id → the info of its last heartbeat (one slot, no SCAN)."""
        flat = self._live_workers(keys=[workers_alive_key(self.prefix),
                                        workers_info_key(self.prefix)])
        out: dict[str, dict[str, Any]] = {}
        for worker, raw in zip(flat[::2], flat[1::2], strict=True):
            try:
                info = json.loads(raw)
            except ValueError:
                info = {}
            out[worker.decode()] = info if isinstance(info, dict) else {}
        return out
