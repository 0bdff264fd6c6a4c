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
  * ``lose_lease(thief, at="commit")``: before the next round commit, the index's lease key
    is deleted (as its expiry would) and ``thief(name)`` runs, typically another runner's
    ``step``, which takes a new lease; then the commit runs for real.

  While the thief runs, :meth:`FaultyStore.commit_now` sends the interrupted commit for real
  (and logs it): how a test makes the victim's commit land *inside* the thief's round.

- ``start_attempt``: ``lose_lease(thief, at="round_start")`` fires right after the round's
  attempts were counted instead, so the whole round runs without the lease;
  ``on_round_start(hook)`` just runs ``hook(name)`` there (the round has read its version
  and its chunks), taking nothing away.

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
    kind: str  # "before", "after", "lose-lease"
    thief: Callable[[str], Any] | None = None
    at: str = "commit"


@dataclass
class LeaseTheft:
    """What ``lose_lease`` did: the lease (``token:worker``) before, the thief's return, the
    lease after."""

    name: str
    owner_before: str | None
    thief_result: Any
    owner_after: str | None


class FaultyStore:
    """A real ``IndexStore`` with faults armed on its round commits (see the module doc)."""

    def __init__(self, inner: IndexStore) -> None:
        self.inner = inner
        self.calls: list[CommitCall] = []
        self.thefts: list[LeaseTheft] = []
        self._commit_faults: list[_Fault] = []
        self._start_faults: list[_Fault] = []
        self._interrupted: tuple[CommitCall, tuple[Any, ...], dict[str, Any]] | None = None

    def __getattr__(self, attr: str) -> Any:  # everything not intercepted: the real store
        return getattr(self.inner, attr)

    # --- arming ---------------------------------------------------------------------------
    def fail_before_exec(self, times: int = 1) -> FaultyStore:
        self._commit_faults += [_Fault("before") for _ in range(times)]
        return self

    def fail_after_exec(self, times: int = 1) -> FaultyStore:
        self._commit_faults += [_Fault("after") for _ in range(times)]
        return self

    def lose_lease(self, thief: Callable[[str], Any] | None = None,
                   at: str = "commit") -> FaultyStore:
        """Delete the lease (``at`` the next round commit, or right after the next round
        start) and let ``thief(name)`` run before the caller carries on."""
        if at not in ("commit", "round_start"):
            raise ValueError(f"lose_lease at {at!r}: 'commit' or 'round_start'")
        fault = _Fault("lose-lease", thief, at)
        (self._commit_faults if at == "commit" else self._start_faults).append(fault)
        return self

    def on_round_start(self, hook: Callable[[str], Any]) -> FaultyStore:
        """Run ``hook(name)`` right after the next round's attempts are counted."""
        self._start_faults.append(_Fault("hook", hook, "round_start"))
        return self

    def commit_now(self) -> bool:
        """Send the commit interrupted by a ``lose_lease`` at commit for real, now (once)."""
        assert self._interrupted is not None, "no commit is interrupted"
        call, args, kwargs = self._interrupted
        self._interrupted = None
        ok = bool(self.inner.commit_round(call.name, call.expected_version, *args, **kwargs))
        early = CommitCall(call.name, call.expected_version, call.ack_ids, "commit-now",
                           "committed" if ok else "refused")
        self.calls.append(early)
        return ok

    @property
    def armed(self) -> int:
        """Faults armed and not fired yet."""
        return len(self._commit_faults) + len(self._start_faults)

    @property
    def commits_written(self) -> list[CommitCall]:
        return [c for c in self.calls if c.wrote]

    # --- intercepted ----------------------------------------------------------------------
    def start_attempt(self, name: str, chunk_ids: list[str], **kwargs: Any
                      ) -> dict[str, int] | None:
        counts = self.inner.start_attempt(name, chunk_ids, **kwargs)
        if chunk_ids and self._start_faults:
            fault = self._start_faults.pop(0)
            if fault.kind == "hook":
                assert fault.thief is not None
                fault.thief(name)
            else:
                self._steal_lease(name, fault.thief)
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
        if fault is not None and fault.kind == "lose-lease":
            self._interrupted = (call, args, kwargs)
            self._steal_lease(name, fault.thief)
            self._interrupted = None
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

    def _steal_lease(self, name: str, thief: Callable[[str], Any] | None) -> None:
        key = self.inner.keys(name).lease
        before = self.inner.r.get(key)
        self.inner.r.delete(key)  # what its expiry does
        result = thief(name) if thief is not None else None
        after = self.inner.r.get(key)
        self.thefts.append(LeaseTheft(name, before.decode() if before else None, result,
                                     after.decode() if after else None))

