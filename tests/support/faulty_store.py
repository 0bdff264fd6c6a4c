"""An ``IndexStore`` that fails on purpose: the faults a round's commit meets in production.

:class:`FaultyStore` wraps a real :class:`~hashstream.store.index_store.IndexStore` on a real
Redis and delegates every attribute to it (it is not a mock: what it does not intercept is the
real store). It intercepts two public methods only:

- ``commit_round`` of a round (a call with a ``segment``; query-only commits pass through):
  armed faults are used up one per round commit, in the order they were armed.

  * ``fail_before_exec(n)``: the next ``n`` round commits raise :class:`InjectedFault` without
    reaching Redis: nothing is written (a connection lost before EXEC).
  * ``fail_after_exec(n)``: the next ``n`` round commits run for real and then raise: the round
    is written and acknowledged, but the caller sees an error (EXEC ran, its reply was lost).
  * ``lose_lock(thief, at="commit")``: before the next round commit, the index's lock key is
    deleted (as its expiry would) and ``thief(name)`` runs, typically another runner's
    ``step``, which takes the lock; then the commit runs for real.

- ``start_attempt``: ``lose_lock(thief, at="round_start")`` fires right after the round's
  attempts were counted instead, so the whole round runs without the lock.

Every round commit is logged in ``calls`` (:class:`CommitCall`: expected version, chunk ids,
the fault, and what really happened), so a test can count the commits that wrote. With
nothing armed the wrapper is a pass-through that only logs (use it for a second runner).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from hashstream.store.index_store import IndexStore


class InjectedFault(redis.ConnectionError):
    """A failure this wrapper raised on purpose (a Redis connection error, as the real ones)."""


@dataclass
class CommitCall:
    """One round commit through the wrapper.

    ``outcome``: ``committed`` (EXEC ran and wrote), ``refused`` (the store returned False:
    the version moved), ``not-sent`` (an injected failure before EXEC) or ``error`` (the real
    store raised); ``raised``: the caller got an exception (injected or real)."""

    name: str
    expected_version: int
    ack_ids: list[str]
    fault: str | None
    outcome: str = ""
    raised: bool = False

    @property
    def wrote(self) -> bool:
        return self.outcome == "committed"


@dataclass
class _Fault:
    kind: str  # "before", "after", "lose-lock"
    thief: Callable[[str], Any] | None = None
    at: str = "commit"


@dataclass
class LockTheft:
    """What ``lose_lock`` did: the lock's owner before, the thief's return, the owner after."""

    name: str
    owner_before: str | None
    thief_result: Any
    owner_after: str | None


class FaultyStore:
    """A real ``IndexStore`` with faults armed on its round commits (see the module doc)."""

    def __init__(self, inner: IndexStore) -> None:
        self.inner = inner
        self.calls: list[CommitCall] = []
        self.thefts: list[LockTheft] = []
        self._commit_faults: list[_Fault] = []
        self._start_faults: list[_Fault] = []

    def __getattr__(self, attr: str) -> Any:  # everything not intercepted: the real store
        return getattr(self.inner, attr)

    # --- arming ---------------------------------------------------------------------------
    def fail_before_exec(self, times: int = 1) -> FaultyStore:
        self._commit_faults += [_Fault("before") for _ in range(times)]
        return self

    def fail_after_exec(self, times: int = 1) -> FaultyStore:
        self._commit_faults += [_Fault("after") for _ in range(times)]
        return self

    def lose_lock(self, thief: Callable[[str], Any] | None = None,
                  at: str = "commit") -> FaultyStore:
        """Delete the lock (``at`` the next round commit, or right after the next round start)
        and let ``thief(name)`` run before the caller carries on."""
        if at not in ("commit", "round_start"):
            raise ValueError(f"lose_lock at {at!r}: 'commit' or 'round_start'")
        fault = _Fault("lose-lock", thief, at)
        (self._commit_faults if at == "commit" else self._start_faults).append(fault)
        return self

    @property
    def armed(self) -> int:
        """Faults armed and not fired yet."""
        return len(self._commit_faults) + len(self._start_faults)

    @property
    def commits_written(self) -> list[CommitCall]:
        return [c for c in self.calls if c.wrote]

    # --- intercepted ----------------------------------------------------------------------
    def start_attempt(self, name: str, chunk_ids: list[str]) -> dict[str, int]:
        counts = self.inner.start_attempt(name, chunk_ids)
        if chunk_ids and self._start_faults:
            self._steal_lock(name, self._start_faults.pop(0).thief)
        return counts

    def commit_round(self, name: str, expected_version: int, *args: Any, **kwargs: Any) -> bool:
        commit = args[0] if args else kwargs.get("commit")
        is_round = getattr(commit, "segment", None) is not None
        fault = self._commit_faults.pop(0) if is_round and self._commit_faults else None
        if not is_round:
            return bool(self.inner.commit_round(name, expected_version, *args, **kwargs))
        call = CommitCall(name, expected_version, list(getattr(commit, "ack_ids", None) or []),
                          fault.kind if fault else None)
        self.calls.append(call)
        if fault is not None and fault.kind == "before":
            call.outcome, call.raised = "not-sent", True
            raise InjectedFault("injected: the connection dropped before EXEC")
        if fault is not None and fault.kind == "lose-lock":
            self._steal_lock(name, fault.thief)
        try:
            ok = bool(self.inner.commit_round(name, expected_version, *args, **kwargs))
        except Exception:
            call.outcome, call.raised = "error", True
            raise
        call.outcome = "committed" if ok else "refused"
        if fault is not None and fault.kind == "after":
            call.raised = True
            raise InjectedFault("injected: EXEC ran but its reply was lost")
        return ok

    def _steal_lock(self, name: str, thief: Callable[[str], Any] | None) -> None:
        key = self.inner.keys(name).lock
        before = self.inner.r.get(key)
        self.inner.r.delete(key)  # what its expiry does
        result = thief(name) if thief is not None else None
        after = self.inner.r.get(key)
        self.thefts.append(LockTheft(name, before.decode() if before else None, result,
                                     after.decode() if after else None))

