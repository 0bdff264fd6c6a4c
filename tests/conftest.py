"""Fixtures shared by every test directory; the helpers themselves live in ``tests/support``.

``support`` is importable everywhere (``pythonpath = ["tests"]`` in pyproject.toml). The Redis
fixtures are registered here by import, so store, service and worker tests share one Redis and
one cleanup; they start nothing unless a test asks for them.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.data import gaussian_stream
from support.redis_cluster import redis_cluster  # noqa: F401 - fixture
from support.redis_fixtures import (  # noqa: F401 - fixtures
    index_store,
    key_prefix,
    redis_client,
    redis_url,
    session_prefix,
)

from hashstream.solver.backend import Backend, get_backend


@pytest.fixture(scope="session")
def np_backend() -> Backend:
    """The float64 NumPy backend."""
    return get_backend("numpy")


@pytest.fixture(scope="session")
def make_stream() -> Any:
    """The :func:`support.data.gaussian_stream` factory, as a fixture (usable inside
    hypothesis tests)."""
    return gaussian_stream
