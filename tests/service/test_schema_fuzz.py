"""Schemathesis over every operation of the live ``/openapi.json``: no input may get a 5xx.

A real ``hashstream serve`` (uvicorn + one worker, real Redis) holds an index with two committed
rounds and one with none, so path-parameter routes reach their data and the "before the first
round" state. Every operation is driven with seeded (derandomized) positive and negative
cases, half of them aimed at those indexes, plus out-of-range integers in every integer query
parameter; ``DELETE`` runs last, against a sacrificial index. Each response goes through
schemathesis' ``not_a_server_error``, ``response_schema_conformance``,
``status_code_conformance`` and ``content_type_conformance`` checks (every error status is
documented once for the whole schema, as ``application/problem+json``). Failures are
collected over the whole run, not stopped at the first, and reported with the server's
traceback line, so one run lists every distinct 5xx.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.errors import FailureGroup

MAX_EXAMPLES = 40  # per operation and generation mode
BOUNDARY_INTS = (2**63, 2**64, 10**30, -(2**63) - 1)
BOUNDARY_EXAMPLES = 2  # per operation, integer query parameter and value
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)(: |$)")


@dataclass
class Finding:
    """One distinct failure: where, what, the server's account of it, and how often."""

    operation: str
    status: int | str
    check: str
    server: str
    example: str
    count: int = 0

    def line(self) -> str:
        return (f"{self.operation} -> {self.status} [{self.check}] ×{self.count}: "
                f"{self.server}\n      e.g. {self.example}")


@dataclass
class Fuzz:
    """Runs cases against the server, collecting failures instead of stopping at the first."""

    server: Any
    checks: list[Any]
    session: requests.Session = field(default_factory=requests.Session)
    findings: dict[tuple[str, str, str], Finding] = field(default_factory=dict)
    cases: int = 0

    def run(self, operation: Any, strategy: st.SearchStrategy[Any], max_examples: int) -> None:
        @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                         HealthCheck.data_too_large,
                                         HealthCheck.large_base_example])
        @given(strategy)
        def one(case: Any) -> None:
            self.check(operation, case)

        try:
            one()
        except Unsatisfiable:  # e.g. no negative cases for an operation without inputs
            pass

    def check(self, operation: Any, case: Any) -> None:
        self.cases += 1
        mark = len(self.server.log.lines)
        response = None
        for attempt in range(2):
            try:
                response = case.call(base_url=self.server.url, session=self.session,
                                     timeout=60)
                break
            except requests.ConnectionError as exc:
                # uvicorn closes the connection after an unhandled error: retry once afresh.
                self.session = requests.Session()
                if attempt:
                    self.record(operation.label, "no response", "connection", repr(exc),
                                case)
        if response is None:
            return
        try:
            case.validate_response(response, checks=self.checks)
        except FailureGroup as group:
            for failure in group.exceptions:
                server = (self.server_error(mark) if response.status_code >= 500
                          else response.text[:200])
                self.record(operation.label, response.status_code, failure.title, server,
                            case)

    def record(self, operation: str, status: int | str, check: str, server: str,
               case: Any) -> None:
        key = (operation, check, server if str(status).startswith("5") else str(status))
        if key not in self.findings:
            try:
                example = case.as_curl_command()
            except Exception:  # noqa: BLE001 - a curl line is a courtesy
                example = repr(case)
            self.findings[key] = Finding(operation, status, check, server, example[:300])
        self.findings[key].count += 1

    def server_error(self, mark: int) -> str:
        """The server's exception line and deepest hashstream frame for the error logged after
        line ``mark`` (the app logs an ``unhandled_error`` event, uvicorn the traceback)."""
        log = self.server.log
        try:
            at = log.lines.index(log.wait_for(lambda s: '"unhandled_error"' in s, 10, mark),
                                 mark)
            event = json.loads(log.lines[at])
            start = log.lines.index(log.wait_for(lambda s: s.startswith("Traceback"), 10, at),
                                    at)
            log.wait_for(lambda s: bool(_EXCEPTION_LINE.match(s)), 10, start + 1)
        except AssertionError:
            return "(no traceback in the server log)"
        frame, exc_line = "", ""
        for line in log.lines[start + 1:]:
            if line.strip().startswith("File ") and "/hashstream/" in line:
                frame = line.strip()
            elif _EXCEPTION_LINE.match(line):
                exc_line = line
                break
        where = re.sub(r'^File ".*?(hashstream/[^"]+)"', r"\1", frame)
        return f"{exc_line or event.get('error')} at {where or event.get('path')}"


def _ready_index(server: Any, name: str, hs: Any, rounds: int) -> None:
    server.create_index(name, 8)
    data = hs.Clusters(seed=3, dim=8, n_classes=4)
    for r in range(rounds):
        x, cls = data.sample(150)
        server.ingest(name, hs.json_chunk(x, cls))
        server.wait_idle(name, min_version=r + 1)


@pytest.fixture(scope="module")
def fuzz_target(start_server: Callable[..., Any], hs: Any) -> tuple[Any, dict[str, str]]:
    """A server with a two-round index, a round-less one and a sacrificial one for DELETE."""
    server = start_server("fuzz", workers=1)
    names = {"ready": hs.unique("fz"), "empty": hs.unique("fz-empty"),
             "victim": hs.unique("fz-victim")}
    _ready_index(server, names["ready"], hs, rounds=2)
    _ready_index(server, names["victim"], hs, rounds=1)
    server.create_index(names["empty"], 8)
    return server, names


def _integer_query_params(operation: Any) -> list[str]:
    return [p.name for p in operation.iter_parameters()
            if p.location.value == "query" and '"integer"' in json.dumps(p.definition)]


def test_no_operation_answers_5xx(fuzz_target: tuple[Any, dict[str, str]]) -> None:
    server, names = fuzz_target
    load_all_checks()
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json",
                                           config=schemathesis.Config())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 16, [op.label for op in operations]
    fuzz = Fuzz(server, [CHECKS.get_one("not_a_server_error"),
                         CHECKS.get_one("response_schema_conformance"),
                         CHECKS.get_one("status_code_conformance"),
                         CHECKS.get_one("content_type_conformance")])
    started = time.monotonic()
    for operation in sorted(operations, key=lambda op: op.method.upper() == "DELETE"):
        targets = ([names["victim"]] if operation.method.upper() == "DELETE"
                   else [names["ready"], names["empty"]])
        has_name = "{name}" in operation.path
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies = [operation.as_strategy(mode)]
            if has_name:
                strategies += [operation.as_strategy(mode, path_parameters={"name": t})
                               for t in targets]
            fuzz.run(operation, st.one_of(strategies), MAX_EXAMPLES)
        for param in _integer_query_params(operation):
            for value in BOUNDARY_INTS:
                paths = [{"name": t} for t in targets] if has_name else [None]
                strategies = [operation.as_strategy(GenerationMode.POSITIVE,
                                                    path_parameters=p, query={param: value})
                              for p in paths]
                fuzz.run(operation, st.one_of(strategies), BOUNDARY_EXAMPLES)
    elapsed = time.monotonic() - started
    print(f"schema fuzz: {fuzz.cases} cases over {len(operations)} operations "
          f"in {elapsed:.0f}s, {len(fuzz.findings)} distinct failures")
    report = "\n".join(f.line() for f in fuzz.findings.values())
    print(report)
    assert not fuzz.findings, f"{len(fuzz.findings)} distinct failures:\n{report}"
    assert server.alive()
