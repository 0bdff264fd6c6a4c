"""A Python client of the hashstream HTTP API, on httpx: :class:`Client` (sync) and
:class:`AsyncClient`, the service's problem+json errors as typed exceptions.

A leaf of the package: it imports httpx and NumPy only, nothing of the service (an
import-linter contract keeps it so), and talks to any hashstream over HTTP.
"""

from hashstream.client.asynchronous import AsyncClient
from hashstream.client.errors import (
    Backlogged,
    ChunkDeadLettered,
    ChunkNotLearned,
    Conflict,
    HashstreamError,
    InvalidInput,
    MalformedBody,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    RoundTimeout,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    raise_for_problem,
)
from hashstream.client.models import (
    ChunkId,
    DeadLetter,
    DeletedItems,
    Hit,
    IndexInfo,
    Item,
    LabelFilter,
    RoundRecord,
    SearchResult,
)
from hashstream.client.search_arrays import SearchArrays
from hashstream.client.sync import Client

__all__ = [
    "AsyncClient", "Backlogged", "ChunkDeadLettered", "ChunkId", "ChunkNotLearned", "Client",
    "Conflict",
    "DeadLetter", "DeletedItems", "HashstreamError", "Hit", "IndexInfo", "InvalidInput", "Item",
    "LabelFilter", "MalformedBody", "NotFound", "PayloadTooLarge", "ProblemError",
    "RoundRecord", "RoundTimeout", "SearchArrays", "SearchResult", "Unauthorized", "Unavailable",
    "UnsupportedMediaType", "raise_for_problem",
]
