"""A client generated from the live ``/openapi.json`` by openapi-python-client parses the
service's errors: every documented error is the one ``Problem`` schema, as sent.

The generator runs with ``--fail-on-warning``: a schema it cannot fully read (duplicate inline
models, FastAPI's 422 list that is never sent) fails here.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.net import unique
from support.processes import PROBLEM, Server

PACKAGE = "hashstream_generated"


def _generator() -> str:
    path = Path(sys.executable).parent / "openapi-python-client"
    found = str(path) if path.exists() else shutil.which("openapi-python-client")
    if found is None:
        pytest.fail("openapi-python-client is not installed (pip install -e '.[dev]')")
    return found


@pytest.fixture(scope="module")
def generated(api: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The package generated from the live schema, imported (and forgotten afterwards)."""
    root = tmp_path_factory.mktemp("generated")
    config = root / "config.json"
    config.write_text(json.dumps({"project_name_override": "hashstream-generated",
                                  "package_name_override": PACKAGE, "post_hooks": []}))
    out = subprocess.run([_generator(), "generate", "--url", f"{api.url}/openapi.json",
                          "--config", str(config), "--meta", "none", "--fail-on-warning",
                          "--output-path", str(root / PACKAGE)],
                         capture_output=True, text=True, timeout=300, check=False)
    output = out.stdout + out.stderr
    assert out.returncode == 0 and "warning" not in output.lower(), output
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def _operation(tag: str, operation_id: str) -> Any:
    """The generated module of one operation (operationId = the route function's name)."""
    return _module(f"api.{tag}.{operation_id}")


def test_every_error_is_one_problem_schema(api: Server) -> None:
    schema = api.http.get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    checked = 0
    operation_ids = [op["operationId"] for ops in schema["paths"].values() for op in ops.values()]
    assert len(set(operation_ids)) == len(operation_ids), operation_ids  # generated names
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if int(status) < 400 or path == "/readyz" and status == "503":
                    continue
                assert list(answer["content"]) == [PROBLEM], (method, path, status)
                ref = answer["content"][PROBLEM]["schema"]
                assert ref == {"$ref": "#/components/schemas/Problem"}, (method, path, status)
                checked += 1
            if path not in ("/healthz",):
                assert "401" in operation["responses"], (method, path)
            if "{name}" in path:
                assert "404" in operation["responses"], (method, path)
    assert checked >= 60


def test_generated_client_parses_404_409_and_422(generated: ModuleType, api: Server) -> None:
    create_index, get_index, rounds = (_operation("indexes", op) for op in
                                       ("create_index", "get_index", "rounds"))
    models = _module("models")
    with generated.Client(base_url=api.url) as client:
        name = unique("gen")
        created = create_index.sync_detailed(
            client=client, body=models.CreateIndex(name=name, dim=8, bits=16))
        assert created.status_code == 201 and isinstance(created.parsed, models.IndexInfo)
        assert created.parsed.name == name and created.parsed.model_version == 0

        missing = get_index.sync_detailed(name=unique("nope"), client=client)
        assert missing.status_code == 404
        assert isinstance(missing.parsed, models.Problem), missing.content
        assert missing.parsed.status == 404 and missing.parsed.field == "name"
        assert "no index named" in missing.parsed.detail

        again = create_index.sync_detailed(
            client=client, body=models.CreateIndex(name=name, dim=8))
        assert isinstance(again.parsed, models.Problem) and again.parsed.status == 409

        # 422 from FastAPI's own validation (a query bound) and from the service (a body field)
        bad_since = rounds.sync_detailed(name=name, client=client, since=-1)
        assert bad_since.status_code == 422
        assert isinstance(bad_since.parsed, models.Problem), bad_since.content
        assert bad_since.parsed.field == "since" and bad_since.parsed.title == "Invalid input"
        bad_dim = create_index.sync_detailed(
            client=client, body=models.CreateIndex(name=unique("gen"), dim=0))
        assert isinstance(bad_dim.parsed, models.Problem) and bad_dim.parsed.field == "dim"
