"""What the client raises: the service's problem+json answers as typed exceptions, one class per
status (named as the service names them), plus the failures of waiting for a round.

Transport failures (connection refused, timeouts) stay httpx's own ``httpx.TransportError``.
"""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM = "application/problem+json"


class HashstreamError(Exception):
    """Base of every error the client raises itself."""


class ProblemError(HashstreamError):
    """An error answer of the service (RFC 9457 problem details): ``status``, ``title``,
    ``detail`` and ``field``, the input at fault (None when the error concerns no input)."""

    def __init__(self, problem: dict[str, Any], response: httpx.Response) -> None:
        self.status: int = response.status_code
        self.title: str = str(problem.get("title") or response.reason_phrase)
        self.detail: str = str(problem.get("detail") or "")
        field = problem.get("field")
        self.field: str | None = None if field is None else str(field)
        self.problem = problem
        self.response = response
        where = f" [{self.field}]" if self.field else ""
        super().__init__(f"{self.status} {self.title}{where}: {self.detail}")

    @property
    def retry_after(self) -> float | None:
        """Seconds the service asks to wait before retrying (Retry-After), if it said."""
        value = self.response.headers.get("Retry-After")
        try:
            return None if value is None else float(value)
        except ValueError:
            return None


class MalformedBody(ProblemError):
    """400: the body is not JSON, is empty, or is not a readable .npz."""


class Unauthorized(ProblemError):
    """401: the API key is missing or wrong."""


class NotFound(ProblemError):
    """404: no such index, item or dead letter (``field`` says which)."""


class Conflict(ProblemError):
    """409: the index exists already, has no round yet, or is behind ``min_version``."""


class PayloadTooLarge(ProblemError):
    """413: the body, the chunk's items or the .npz arrays pass a limit."""


class UnsupportedMediaType(ProblemError):
    """415: a Content-Type the route does not read."""


class InvalidInput(ProblemError):
    """422: a field's value is wrong; ``field`` names it, ``detail`` says why."""


class Backlogged(ProblemError):
    """429: the index's backlog of items waiting for rounds passed a limit (``limit`` names
    the setting); retry after ``retry_after`` seconds, or pass ``retry_for`` to ``ingest``."""

    @property
    def limit(self) -> str | None:
        value = self.problem.get("limit")
        return None if value is None else str(value)

    @property
    def backlog_items(self) -> int | None:
        value = self.problem.get("backlog_items")
        return None if value is None else int(value)


class Unavailable(ProblemError):
    """503: Redis is unreachable, or the replica is behind ``min_version`` (``retry_after``)."""


_BY_STATUS: dict[int, type[ProblemError]] = {
    400: MalformedBody, 401: Unauthorized, 404: NotFound, 409: Conflict, 413: PayloadTooLarge,
    415: UnsupportedMediaType, 422: InvalidInput, 429: Backlogged, 503: Unavailable}


def raise_for_problem(response: httpx.Response) -> None:
    """Raise the typed error of an error answer; return for a success. An error answer that is
    not problem+json (a proxy's HTML page) becomes a :class:`ProblemError` with its text."""
    if response.is_success:
        return
    problem: dict[str, Any] = {}
    if response.headers.get("content-type", "").split(";")[0].strip() in (PROBLEM,
                                                                          "application/json"):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            problem = body
    if not problem:
        problem = {"title": response.reason_phrase, "detail": response.text[:500]}
    raise _BY_STATUS.get(response.status_code, ProblemError)(problem, response)


class RoundTimeout(HashstreamError, TimeoutError):
    """No round learned the chunk within the time given."""


class ChunkDeadLettered(HashstreamError):
    """The chunk's rounds kept failing: it was moved to the index's dead letters
    (``entry``: the dead letter, with its errors; requeue it to try again)."""

    def __init__(self, chunk_id: str, entry: dict[str, Any]) -> None:
        self.chunk_id = chunk_id
        self.entry = entry
        super().__init__(f"chunk {chunk_id} was dead-lettered as {entry.get('id')}: "
                         f"{entry.get('reason')}")


class ChunkNotLearned(HashstreamError):
    """The queue no longer holds the chunk, yet no round lists it and it is no dead letter:
    a held-out query chunk (stored for scoring, never learned), or no chunk of this index."""
