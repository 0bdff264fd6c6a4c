"""`serve`'s supervisors: keep its round-worker children and (with ``--api-processes N``) its
API-process children running.

Each child runs ``hashstream worker --worker-id ID`` with an id the supervisor chose, so when a
child exits while `serve` is running (OOM kill, kill -9, a crash) the supervisor knows exactly
what it left behind and, at once:

1. drops its heartbeat, so ``/readyz`` stops counting it now instead of when it expires;
2. releases every round lease it held (compare-and-delete on its id), so another worker redoes
   the interrupted round now instead of after the lease TTL;
3. counts the restart in Redis (``/metrics``: ``hashstream_worker_restarts_total``);
4. logs one JSON line ``{"event": "worker_restart", "worker", "exit_code", "restarts",
   "backoff_s", …}`` and starts a replacement with a new id after the backoff
   (:class:`Backoff`: 0 s the first time, then 1, 2, 4 … 30 s while children keep dying;
   a child that lived 60 s resets it).

The children are started *from the supervisor thread* and stopped by it too: their
parent-death signal (``PR_SET_PDEATHSIG``) fires when the thread that forked them ends, so the
thread outlives them and a kill -9 of `serve` still takes them down. :meth:`shutdown` (called
from the serve's signal handler, before the children see the same Ctrl-C) ends restarts and
has the thread terminate the children (SIGTERM, SIGKILL after ``grace_s``); :meth:`stop` does
the same and waits until they are gone.

API processes (:class:`ProcessSupervisor`, the same loop without the Redis clean-up: an API
process holds nothing in Redis) share one listening socket the serve bound; one that dies is
replaced the same way (a JSON line ``{"event": "api_process_restart", …}``) while the others
keep accepting on the socket.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hashstream.store.index_store import IndexStore

log = logging.getLogger("hashstream.supervisor")

Spawn = Callable[[str], "subprocess.Popen[bytes]"]


def log_event(event: str, **fields: Any) -> None:
    log.info(json.dumps({"ts": round(time.time(), 3), "event": event, **fields}, default=str))


@dataclass
class Backoff:
    """Delay before restarting a worker slot whose child died after living ``lived_s``.

    The first death restarts at once; each further quick death doubles the delay from
    ``base_s`` up to ``cap_s``; a child that lived ``reset_after_s`` or longer counts as healthy
    and its death starts the sequence again (at 0 s).
    """

    base_s: float = 1.0
    cap_s: float = 30.0
    reset_after_s: float = 60.0
    quick_deaths: int = 0

    def next_delay(self, lived_s: float) -> float:
        if lived_s >= self.reset_after_s:
            self.quick_deaths = 0
        n = self.quick_deaths
        self.quick_deaths += 1
        return 0.0 if n == 0 else float(min(self.cap_s, self.base_s * 2 ** (n - 1)))


@dataclass
class _Slot:
    backoff: Backoff
    worker_id: str = ""
    child: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float | None = None  # set while the slot waits out its backoff


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def new_api_process_id() -> str:
    return f"api-{uuid.uuid4().hex[:8]}"


class ProcessSupervisor:
    """Runs ``n`` children via ``spawn(child_id)`` (ids from ``new_id``) and restarts any that
    dies, logging ``{kind}_restart``."""

    kind = "api_process"

    def __init__(self, spawn: Spawn, n: int, *, poll_s: float = 0.1, grace_s: float = 10.0,
                 backoff: Callable[[], Backoff] = Backoff,
                 new_id: Callable[[], str] = new_api_process_id) -> None:
        self.spawn = spawn
        self.new_id = new_id
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.slots = [_Slot(backoff()) for _ in range(max(0, n))]
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # spawning vs. shutdown
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}-supervisor",
                                        daemon=True)

    def start(self) -> ProcessSupervisor:
        if self.slots:
            self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop restarting and start terminating the children; safe from a signal handler."""
        self._stopping.set()

    def stop(self) -> None:
        """``shutdown``, then wait until the children are gone."""
        self.shutdown()
        if self._thread.is_alive():
            self._thread.join(self.grace_s + 15)

    def children(self) -> list[subprocess.Popen[bytes]]:
        return [s.child for s in self.slots if s.child is not None]

    # --- the supervisor thread -------------------------------------------------------------
    def _run(self) -> None:
        try:
            now = time.monotonic()
            for slot in self.slots:
                slot.restart_at = now  # the first start goes through the restart path
                self._check(slot)
            while not self._stopping.wait(self.poll_s):
                for slot in self.slots:
                    self._check(slot)
        finally:
            self._terminate_all()

    def _start_child(self, slot: _Slot) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            slot.worker_id = self.new_id()
            slot.child = self.spawn(slot.worker_id)
            slot.started = time.monotonic()
            slot.restart_at = None

    def _check(self, slot: _Slot) -> None:
        if slot.child is not None:
            code = slot.child.poll()
            if code is None or self._stopping.is_set():
                return
            lived = time.monotonic() - slot.started
            slot.child = None
            delay = slot.backoff.next_delay(lived)
            self._forget(slot.worker_id, code, lived, delay)
            slot.restart_at = time.monotonic() + delay
        if slot.restart_at is not None and time.monotonic() >= slot.restart_at:
            try:
                self._start_child(slot)
            except OSError as exc:  # fork/exec failed: try again after the next backoff
                delay = slot.backoff.next_delay(0.0)
                log_event(f"{self.kind}_spawn_error", error=repr(exc), backoff_s=delay)
                slot.restart_at = time.monotonic() + delay

    def _forget(self, child_id: str, code: int, lived: float, delay: float) -> None:
        """Log a dead child's restart."""
        log_event(f"{self.kind}_restart", id=child_id, exit_code=code, backoff_s=delay,
                  lived_s=round(lived, 3))

    def _terminate_all(self) -> None:
        with self._lock:
            self._stopping.set()
            children = self.children()
        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + self.grace_s
        for child in children:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


class WorkerSupervisor(ProcessSupervisor):
    """Runs ``n`` worker children via ``spawn(worker_id)`` and restarts any that dies; a dead
    worker's heartbeat and leases are cleared and its restart counted in Redis."""

    kind = "worker"

    def __init__(self, store: IndexStore, spawn: Spawn, n: int, *, poll_s: float = 0.1,
                 grace_s: float = 10.0, backoff: Callable[[], Backoff] = Backoff) -> None:
        super().__init__(spawn, n, poll_s=poll_s, grace_s=grace_s, backoff=backoff,
                         new_id=new_worker_id)
        self.store = store

    def _forget(self, worker_id: str, code: int, lived: float, delay: float) -> None:
        """Clear what a dead worker left in Redis, count the restart, log it."""
        released: list[str] = []
        restarts: int | None = None
        error = None
        try:
            self.store.drop_heartbeat(worker_id)
            released = self.store.release_leases_of(worker_id)
            restarts = self.store.count_restart()
        except Exception as exc:  # noqa: BLE001 - Redis down: restart anyway, the TTLs expire
            error = repr(exc)
        log_event("worker_restart", worker=worker_id, exit_code=code, restarts=restarts,
                  backoff_s=delay, lived_s=round(lived, 3), leases_released=released,
                  **({"error": error} if error else {}))
