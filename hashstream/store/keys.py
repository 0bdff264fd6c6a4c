"""Every Redis key hashstream uses, in one place.

An index's keys carry its name as a Redis Cluster hash tag (``hs:{name}:…``) so one index lives
on one shard and a round's MULTI/EXEC touches a single slot. ``prefix`` lets tests (and several
deployments on one server) keep apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INDEX_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class IndexKeys:
    """Keys of one index."""

    prefix: str
    name: str

    def _k(self, suffix: str) -> str:
        return f"{self.prefix}:{{{self.name}}}:{suffix}"

    @property
    def config(self) -> str:
        """JSON of the index's immutable settings."""
        return self._k("config")

    @property
    def version(self) -> str:
        """Committed model version (= rounds committed); swapped inside the round's MULTI."""
        return self._k("version")

    @property
    def state(self) -> str:
        """Hash: the latest solver state's arrays (accumulators, exemplars, centers, φ)."""
        return self._k("state")

    def projection(self, version: int) -> str:
        """P of one model version (immutable once written)."""
        return self._k(f"projection:{version}")

    def deep_model(self, model_version: int) -> str:
        """Hash: the arrays of one deep (ECMH) model version (immutable once written)."""
        return self._k(f"deep_model:{model_version}")

    @property
    def center_memory(self) -> str:
        """Hash: round → Y of that round (the hash-center memory)."""
        return self._k("center_memory")

    def segment(self, version: int) -> str:
        """Hash: the code-store segment written by one model version (packed codes, ids,
        labels as class-id lists in CSR form); for a partitioned index its manifest (the
        lease token that names the partitions' parts, and their sizes)."""
        return self._k(f"segment:{version}")

    def partition_segment(self, partition: int, version: int, token: int) -> str:
        """Hash: one partition's part of a segment of a partitioned index, on the partition's
        own hash tag (``{name#p}``, so partitions spread over shards). Named by the lease token
        of the round that wrote it: a round that loses its lease never overwrites the winner's
        part."""
        return f"{self.prefix}:{{{self.name}#{partition}}}:segment:{version}:{token}"

    @property
    def queries(self) -> str:
        """Hash: chunk id → held-out query chunk (features, labels)."""
        return self._k("queries")

    @property
    def rounds(self) -> str:
        """List of round records (JSON), oldest first."""
        return self._k("rounds")

    @property
    def commit_seconds(self) -> str:
        """Hash: round → seconds its MULTI/EXEC took (known only after the commit)."""
        return self._k("commit_seconds")

    @property
    def stream(self) -> str:
        """The ingest queue (a Redis Stream with one consumer group)."""
        return self._k("ingest")

    @property
    def lease(self) -> str:
        """The round lease: ``<token>:<worker id>`` of the one worker that may commit the
        index's next round (expires unless renewed)."""
        return self._k("lease")

    @property
    def lease_token(self) -> str:
        """Counter: the fencing token of the latest lease taken (strictly increasing)."""
        return self._k("lease_token")

    @property
    def partition_writes(self) -> str:
        """Set of ``<version>:<lease token>`` whose partition segments were written (committed
        or not): what deleting the index must remove on the partitions' slots."""
        return self._k("partition_writes")

    @property
    def next_id(self) -> str:
        """Counter for item ids assigned by the service."""
        return self._k("next_id")

    @property
    def label_kind(self) -> str:
        """``int`` or ``str``: the type of the client's class labels, fixed by the first chunk."""
        return self._k("label_kind")

    @property
    def class_numbers(self) -> str:
        """Hash: client class label → dense internal class number."""
        return self._k("class_numbers")

    @property
    def class_labels(self) -> str:
        """List: internal class number → client class label (the inverse of class_numbers)."""
        return self._k("class_labels")

    @property
    def attempts(self) -> str:
        """Hash: chunk id → rounds started with that chunk and not committed."""
        return self._k("attempts")

    @property
    def attempt_errors(self) -> str:
        """Hash: chunk id → JSON list of the errors of its failed rounds (newest last)."""
        return self._k("attempt_errors")

    @property
    def dead_letters(self) -> str:
        """Stream of chunks whose rounds failed too often (poison), with their history."""
        return self._k("dead_letters")

    @property
    def delete_epoch(self) -> str:
        """Counter: item deletes committed (= entries of :attr:`delete_log`); read with the
        version by every search, so a replica that is behind catches up before it answers."""
        return self._k("delete_epoch")

    @property
    def delete_log(self) -> str:
        """List, oldest first: one entry per delete that removed items, ``<version> <stream
        id> <encoded int64 ids>`` (the version committed and the ingest stream's last id when
        it ran). Replicas replay it to drop the items from the segments they hold."""
        return self._k("delete_log")

    @property
    def items(self) -> str:
        """Live items after the latest commit and deletes (set by each round's commit,
        decreased by each delete)."""
        return self._k("items")

    @property
    def queued_items(self) -> str:
        """Counter: items in the chunks accepted and not yet committed or dead-lettered (up
        with each XADD, down with each commit's and dead letter's acknowledgement)."""
        return self._k("queued_items")

    @property
    def learn_rate(self) -> str:
        """Items per second of the index's recent rounds (written by the worker after each
        commit): how fast the backlog drains."""
        return self._k("learn_rate")

    @property
    def refusals(self) -> str:
        """Counter: ingests refused because the backlog passed a limit (429)."""
        return self._k("refusals")

    @property
    def ingest_keys(self) -> str:
        """Hash: an ingest's Idempotency-Key → "<chunk id> <its answer as JSON>" (what a retry
        of the same request is answered; pruned after the keys' lifetime)."""
        return self._k("ingest_keys")

    @property
    def ingest_key_expiry(self) -> str:
        """Sorted set: each Idempotency-Key scored by when it expires (unix seconds)."""
        return self._k("ingest_key_expiry")

    def all(self) -> list[str]:
        """Fixed keys (projections are found by pattern)."""
        return [self.config, self.version, self.state, self.center_memory, self.queries,
                self.rounds, self.commit_seconds, self.stream, self.lease, self.lease_token,
                self.next_id, self.label_kind, self.class_numbers, self.class_labels,
                self.attempts, self.attempt_errors, self.dead_letters, self.partition_writes,
                self.delete_epoch, self.delete_log, self.items, self.queued_items,
                self.learn_rate, self.refusals, self.ingest_keys, self.ingest_key_expiry]


def registry_key(prefix: str) -> str:
    """Set of index names: written last on create, removed first on delete (an index exists
    when its config does; the set is what lists it)."""
    return f"{prefix}:indexes"


def workers_alive_key(prefix: str) -> str:
    """Sorted set: worker id → the server time (ms) its heartbeat expires. One hash-tagged key
    with :func:`workers_info_key`, so liveness is read from one slot, never by SCAN."""
    return f"{prefix}:{{workers}}:alive"


def workers_info_key(prefix: str) -> str:
    """Hash: worker id → JSON of its last heartbeat (kernel, backend, start time)."""
    return f"{prefix}:{{workers}}:info"


def supervisor_restarts_key(prefix: str) -> str:
    """Counter: worker children `serve`'s supervisor restarted after they died (INCR)."""
    return f"{prefix}:supervisor:restarts"
