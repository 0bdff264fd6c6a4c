"""Typed errors of the service; the API maps each to one HTTP status with problem+json.

The subclasses below are declarations (a status and a title each), alike by design: one class
per HTTP status the service answers, so routes raise by meaning, not by number."""

from __future__ import annotations


class ServiceError(Exception):
    """Base: ``status`` is the HTTP status, ``field`` the offending input field if any."""

    status = 400
    title = "Bad request"
    retry_after: int | None = None  # seconds, sent as Retry-After when set

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra: dict[str, object] = {}  # problem+json extension members
        self.headers: dict[str, str] = {}  # more response headers (Retry-After: retry_after)


class InvalidInput(ServiceError):
    status = 422
    title = "Invalid input"


class MalformedBody(ServiceError):
    status = 400
    title = "Malformed body"


class NotFound(ServiceError):
    status = 404
    title = "Not found"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"


class PayloadTooLarge(ServiceError):
    status = 413
    title = "Payload too large"


class Unavailable(ServiceError):
    status = 503
    title = "Service unavailable"


class ReplicaBehind(Unavailable):
    """The replica did not reach a search's ``min_version`` in time; retrying soon works."""

    retry_after = 1


class UnsupportedMediaType(ServiceError):
    status = 415
    title = "Unsupported media type"
