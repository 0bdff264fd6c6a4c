"""`serve --api-processes 2`: two API processes on one port, each with its own replicas. Both
answer (``X-Hashstream-Process`` names which), both see new rounds and item deletes, a killed
one is replaced while the other keeps answering, and a kill -9 of the serve leaves no process
behind (the children die with it: PR_SET_PDEATHSIG); SIGTERM stops them all cleanly.

Each request goes on a fresh connection (the kernel hands a new connection to whichever API
process accepts it first), so a few dozen requests reach both."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import psutil
import pytest

DIM, BITS = 16, 32
HEADER = "x-hashstream-process"


def api_children(server: Any) -> dict[int, str]:
    """pid → id of the serve's API children (from their command lines)."""
    out = {}
    for child in psutil.Process(server.pid).children():
        cmd = child.cmdline()
        if "api" in cmd and "--process-id" in cmd:
            out[child.pid] = cmd[cmd.index("--process-id") + 1]
    return out


def from_each_process(server: Any, request: Callable[[httpx.Client], httpx.Response],
                      expected: set[str], attempts: int = 200) -> dict[str, httpx.Response]:
    """One answer from each API process in ``expected``, each request on a new connection."""
    seen: dict[str, httpx.Response] = {}
    for _ in range(attempts):
        with httpx.Client(base_url=server.url, timeout=30) as http:
            r = request(http)
        seen.setdefault(r.headers[HEADER], r)
        if set(seen) >= expected:
            return seen
    raise AssertionError(f"answers came from {sorted(seen)} only, not all of {sorted(expected)}")


@pytest.fixture(scope="module")
def server(start_server: Callable[..., Any]) -> Any:
    return start_server("apiprocs", workers=1, api_processes=2)


def test_two_api_processes_answer_alike_and_see_rounds_and_deletes(server: Any,
                                                                   hs: Any) -> None:
    ids = set(hs.wait_until(lambda: api_children(server) if len(api_children(server)) == 2
                            else None, 60, 0.1, "two API processes").values())
    name = hs.unique("two")
    r = server.http.post("/indexes", json={"name": name, "dim": DIM, "bits": BITS,
                                           "method": "lsh", "seed": 5})
    assert r.status_code == 201, r.text
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, DIM)).astype(np.float32)
    labels = [[int(c)] for c in rng.integers(0, 4, 300)]
    server.ingest(name, {"features": x[:200].tolist(), "labels": labels[:200]})
    server.wait_idle(name, 1)
    query = {"features": x[:3].tolist(), "k": 300}

    def search(min_version: int) -> Callable[[httpx.Client], httpx.Response]:
        return lambda http: http.post(f"/indexes/{name}/search",
                                      json={**query, "min_version": min_version})

    first = from_each_process(server, search(1), ids)
    answers = [r.json() for r in first.values()]
    assert all(r.status_code == 200 for r in first.values())
    assert answers[0] == answers[1] and answers[0]["model_version"] == 1
    assert {h["id"] for h in answers[0]["results"][0]} == set(range(200))

    # a new round: both processes load it
    server.ingest(name, {"features": x[200:].tolist(), "labels": labels[200:]})
    server.wait_idle(name, 2)
    second = from_each_process(server, search(2), ids)
    answers = [r.json() for r in second.values()]
    assert answers[0] == answers[1] and answers[0]["model_version"] == 2
    assert {h["id"] for h in answers[0]["results"][0]} == set(range(300))

    # a delete answered by one process is applied by both before they answer
    deleted = server.http.post(f"/indexes/{name}/items/delete", json={"ids": [7, 250]})
    assert deleted.status_code == 200 and deleted.json()["deleted"] == [7, 250]
    third = from_each_process(server, search(2), ids)
    for r in third.values():
        assert {h["id"] for h in r.json()["results"][0]} == set(range(300)) - {7, 250}


def test_a_killed_api_process_is_replaced_while_the_other_answers(server: Any,
                                                                  hs: Any) -> None:
    before = hs.wait_until(lambda: api_children(server) if len(api_children(server)) == 2
                           else None, 60, 0.1, "two API processes")
    (victim_pid, victim_id), (other_pid, other_id) = sorted(before.items())
    mark = len(server.log.lines)
    os.kill(victim_pid, signal.SIGKILL)
    restart = server.log.wait_event("api_process_restart", 30, mark)
    assert restart["id"] == victim_id and restart["exit_code"] == -signal.SIGKILL
    after = hs.wait_until(lambda: api_children(server) if len(api_children(server)) == 2
                          else None, 60, 0.1, "a replacement API process")
    assert other_pid in after and victim_pid not in after
    new_id = next(i for p, i in after.items() if p != other_pid)
    assert new_id not in (victim_id, other_id)
    server.wait_up(ready=True)
    seen = from_each_process(server, lambda http: http.get("/healthz"), {other_id, new_id})
    assert all(r.status_code == 200 for r in seen.values())


def test_kill9_of_the_serve_leaves_no_api_process_behind(start_server: Callable[..., Any],
                                                         hs: Any) -> None:
    server = start_server("apiorphans", workers=1, api_processes=2)
    children = hs.wait_until(lambda: api_children(server) if len(api_children(server)) == 2
                             else None, 60, 0.1, "two API processes")
    every = [p.pid for p in psutil.Process(server.pid).children(recursive=True)]
    assert set(children) <= set(every) and len(every) == 3  # two API processes and a worker
    os.kill(server.pid, signal.SIGKILL)
    server.popen.wait(timeout=30)

    def gone() -> bool:
        return not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                       for p in every)

    hs.wait_until(gone, 30, 0.1, "the serve's children gone with it")
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/healthz", timeout=5)


def test_sigterm_stops_the_api_processes_and_the_workers(start_server: Callable[..., Any],
                                                         hs: Any) -> None:
    server = start_server("apistop", workers=1, api_processes=2)
    hs.wait_until(lambda: len(api_children(server)) == 2, 60, 0.1, "two API processes")
    every = [p.pid for p in psutil.Process(server.pid).children(recursive=True)]
    os.kill(server.pid, signal.SIGTERM)
    assert server.popen.wait(timeout=60) == 0
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                   for p in every)
    restarts = [e for e in server.log.events() if e.get("event") == "api_process_restart"]
    assert restarts == []  # stopping is not dying: nothing was restarted
