"""The service's side of the Method seam: an index's method built once from its config, and the
one decoder of a method's stored state (used by the worker and by the search replicas)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hashstream.service.registry import ConfigCache, IndexConfig
from hashstream.solver import method as methods
from hashstream.solver.backend import Backend, get_backend
from hashstream.solver.method import Method, MethodSpec
from hashstream.store.index_store import IndexStore

Arrays = dict[str, np.ndarray[Any, Any]]


class IndexMethods:
    """Config and method of each index, decoded and built once per index incarnation (the
    config is immutable; a re-created index has a new creation stamp)."""

    def __init__(self, backend: Backend | None = None) -> None:
        self.backend = backend or get_backend("numpy")
        self._configs = ConfigCache()
        self._methods: dict[str, tuple[IndexConfig, Method]] = {}

    def get(self, name: str, raw: dict[str, Any]) -> tuple[IndexConfig, Method]:
        """(config, method) of index ``name`` whose stored config is ``raw``."""
        config = self.config(name, raw)
        return config, self.method(config)

    def config(self, name: str, raw: dict[str, Any]) -> IndexConfig:
        """The config of index ``name`` whose stored config is ``raw`` (decoded once)."""
        return self._configs.decode(name, raw)

    def method(self, config: IndexConfig) -> Method:
        """The method of ``config`` (built once for an equal config)."""
        cached = self._methods.get(config.name)
        if cached is None or cached[0] != config:
            spec = MethodSpec(config.dim, config.method_settings(), self.backend)
            cached = self._methods[config.name] = (config, methods.create(config.method, spec))
        return cached[1]


def load_state(store: IndexStore, name: str, method: Method,
               fields: list[str] | None = None) -> tuple[Arrays, Arrays | None]:
    """The method's stored state arrays (all, or only ``fields``) and, where the state names a
    ``model_version``, that model version's arrays (else None)."""
    want = None if fields is None else sorted({*fields, "model_version"})
    state = store.load_state(name, want)
    model = None
    if "model_version" in state and int(state["model_version"]) > 0:
        model = store.load_deep_model(name, int(state["model_version"]))
    return state, model


def decode_state(store: IndexStore, name: str, method: Method) -> Any:
    """The method's state object as stored (the worker's starting point after a restart)."""
    state, model = load_state(store, name, method)
    return method.state_from_arrays(state, model)
