"""Item deletes: the delete log every replica replays, and the one script that appends to it.

A delete is decided by an API process against its replica (the ids live at delete epoch E and,
when some were unknown to it, at version V); the script commits it only while the index is still
at that epoch (and version), so two deletes of one id never both remove it and an id answered
"unknown" was unknown at the committed version. Each entry names the version it applied to (it
removes an id's entries from segments up to that version; an entry in a later segment is a new
upsert) and the ingest stream's last id then: chunks accepted up to it and committed later are
filtered by the worker, so a delete also cancels the upserts of its ids queued before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

from hashstream.store.codec import decode_array, encode_array
from hashstream.store.keys import IndexKeys

# KEYS: version, delete_epoch, delete_log, items, stream, config; ARGV: expected delete epoch,
# expected version ('' = any), number of ids, encoded int64 ids.
# Returns {1, new epoch, version}, {0, epoch, version} (moved: decide again) or {-1} (no index).
# The same delete again right after it was logged (the last entry holds these very ids at the
# next epoch, and nothing was queued since) is this delete re-sent after a lost reply
# (RedisCluster's client re-sends on a timeout): answered {1, …} again, nothing logged twice.
# Once a chunk was queued after it, a delete of those ids has a later place in the ingest
# order (it would cancel that chunk's upserts), so it is refused as before: decide again.
_DELETE = """
if redis.call('EXISTS', KEYS[6]) == 0 then return {-1, 0, 0} end
local epoch = tonumber(redis.call('GET', KEYS[2]) or '0')
local version = tonumber(redis.call('GET', KEYS[1]) or '0')
local function last_queued()  -- the stream's last id (its place in the ingest order)
  if redis.call('EXISTS', KEYS[5]) == 0 then return '0-0' end
  local info = redis.call('XINFO', 'STREAM', KEYS[5])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then return info[i + 1] end
  end
  return '0-0'
end
if epoch == tonumber(ARGV[1]) + 1 then
  local last = redis.call('LINDEX', KEYS[3], -1)  -- '<version> <stream id> <ids>'
  if last then
    local after_version = string.find(last, ' ', 1, true)
    local after_seq = after_version and string.find(last, ' ', after_version + 1, true)
    if after_seq and string.sub(last, after_seq + 1) == ARGV[4]
        and string.sub(last, after_version + 1, after_seq - 1) == last_queued() then
      return {1, epoch, version}
    end
  end
end
if epoch ~= tonumber(ARGV[1]) or (ARGV[2] ~= '' and version ~= tonumber(ARGV[2])) then
  return {0, epoch, version}
end
redis.call('RPUSH', KEYS[3], string.format('%d', version) .. ' ' .. last_queued() .. ' '
  .. ARGV[4])
redis.call('INCR', KEYS[2])
if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('DECRBY', KEYS[4], ARGV[3]) end
return {1, epoch + 1, version}
"""

StreamPosition = tuple[int, int]


def stream_position(entry_id: str | bytes) -> StreamPosition:
    """A stream entry id (``<ms>-<seq>``) as a pair that orders like the stream."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class DeleteEntry:
    """Delete number ``epoch`` (1, 2, …): ``ids`` removed at committed ``version``, when the
    ingest stream's last id was ``queued_up_to``."""

    epoch: int
    version: int
    queued_up_to: StreamPosition
    ids: np.ndarray[Any, Any]

    @classmethod
    def decode(cls, epoch: int, raw: bytes) -> DeleteEntry:
        version, seq, ids = raw.split(b" ", 2)
        return cls(epoch, int(version), stream_position(seq),
                   decode_array(ids).astype(np.int64, copy=False))


@dataclass(frozen=True)
class DeleteOutcome:
    """What the delete script did: ``status`` 1 (logged as delete ``epoch`` at ``version``),
    0 (the index moved on from the expected epoch or version: decide again) or -1 (no index)."""

    status: int
    epoch: int
    version: int


class ItemDeletes:
    """The delete log of every index under ``prefix`` (keys: :class:`IndexKeys`)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r: Any = client
        self.prefix = prefix
        self._delete = client.register_script(_DELETE)

    def delete(self, name: str, ids: np.ndarray[Any, Any], epoch: int,
               version: int | None) -> DeleteOutcome:
        """Log the removal of ``ids`` (all live at delete epoch ``epoch`` and, unless None, at
        ``version``) and take them off the live-item count, if the index is still there."""
        k = IndexKeys(self.prefix, name)
        ids = np.asarray(ids, dtype=np.int64)
        reply = self._delete(
            keys=[k.version, k.delete_epoch, k.delete_log, k.items, k.stream, k.config],
            args=[epoch, "" if version is None else version, int(ids.size), encode_array(ids)])
        return DeleteOutcome(*(int(v) for v in reply))

    def read(self, name: str, start: int, stop: int | None = None) -> list[DeleteEntry]:
        """Deletes ``start + 1`` … ``stop`` (None: the latest), oldest first."""
        if stop is not None and stop <= start:
            return []
        raw = self.r.lrange(IndexKeys(self.prefix, name).delete_log, start,
                            -1 if stop is None else stop - 1)
        return [DeleteEntry.decode(start + 1 + i, value) for i, value in enumerate(raw)]
