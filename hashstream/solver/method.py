"""The Method seam: what the worker, the commit and the search replicas know of a hashing method.

A method learns binary codes chunk by chunk from a state it carries between rounds, and builds
an encoder for queries from what it persisted. The service holds no method's math: it merges a
round's chunks, calls :meth:`Method.learn`, commits what the :class:`LearnResult` names, and
searches with :meth:`Method.encoder`. A method is one solver module and a :func:`register` call
(``hashstream.solver.lsh`` is the smallest); its module is listed in ``_BUILTIN`` so
:func:`get` and :func:`names` find it without the service importing it by name.

Conventions every method keeps:

- codes are packed uint8 rows (``np.packbits`` of bit = 1 for +1, as
  :func:`hashstream.solver.metrics.pack_codes`), one n × ⌈r/8⌉ array per **target**: "pairs"
  is the code a stored item is searched by (every method has it); a cross-modal method adds
  "image" and "text" (the codes of each side of a pair);
- a state persists as ``dict[str, numpy array]`` (numbers and booleans only: the store's codec,
  no pickle); ``state_from_arrays`` is its inverse;
- a method that keeps a model too large to rewrite every round (network weights) puts
  ``model_version`` (0-d int) in its state arrays and, in the round that makes a new version,
  the version's arrays in :attr:`LearnResult.model`; model versions are immutable once stored;
- a method with a linear projection reports it (:attr:`LearnResult.projection`); the store
  keeps it per round, and an encoder built for round v is given P of round v under the state
  key ``projection``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from hashstream.solver.backend import Backend, get_backend
from hashstream.solver.class_lists import ClassLists

Arrays = dict[str, np.ndarray[Any, Any]]
Modality = Literal["image", "text"]
PAIRS = "pairs"

# Modules that register the built-in methods when imported (imported on first lookup).
_BUILTIN = ("hashstream.solver.sdoh_hc.method", "hashstream.solver.ecmh.method",
            "hashstream.solver.lsh")


@runtime_checkable
class Encoder(Protocol):
    """Encodes queries under one committed state of a method."""

    bits: int
    modalities: tuple[str, ...]
    """Query modalities accepted: ("image",) for single-modal methods (the feature vectors of
    an index are "image"), ("image", "text") for cross-modal ones."""

    def encode(self, queries: np.ndarray[Any, Any], modality: str = "image"
               ) -> np.ndarray[Any, Any]:
        """Packed codes (uint8, q × ⌈bits/8⌉) of ``queries`` (q × d rows of ``modality``)."""
        ...

    def project(self, queries: np.ndarray[Any, Any], modality: str = "image"
                ) -> np.ndarray[Any, Any]:
        """The real-valued projections (float, q × bits) whose signs (sgn(0) = +1) are the
        codes :meth:`encode` packs: a search orders the items at one Hamming distance by
        their code's inner product with it."""
        ...


@dataclass
class LearnResult:
    """What one round of a method produced.

    ``codes``: packed codes of the chunk per target ("pairs", …), rows in input order.
    ``state``: the next state (the object :meth:`Method.learn` takes next round);
    ``state_arrays``: it as arrays, to persist (replaces the stored state).
    ``model``: the arrays of a new model version (None: the model did not change); the version
    number is ``state_arrays["model_version"]``.
    ``projection`` / ``centers``: P and the hash centers Y of this round, for methods that have
    them (the store keeps P per round and Y in the hash-center memory).
    ``loss``: the objective's terms at the end of the round; ``seconds``: time per step.
    ``record``: method-specific fields of the round record (JSON-ready), e.g. ``action``.
    ``encoder``: encodes queries under the new state (same as ``Method.encoder`` of the stored
    arrays, built without a round trip through them).
    """

    codes: dict[str, np.ndarray[Any, Any]]
    state: Any
    state_arrays: Arrays
    encoder: Encoder
    model: Arrays | None = None
    projection: np.ndarray[Any, Any] | None = None
    centers: np.ndarray[Any, Any] | None = None
    loss: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Method(Protocol):
    """A hashing method configured for one index (its settings fixed at construction).

    Attributes: ``name`` (the registry name), ``bits`` (code length), ``targets`` (the code
    targets every round's :attr:`LearnResult.codes` holds, "pairs" first), ``modalities``
    (query modalities its encoders accept), ``encoder_fields`` (the state arrays
    :meth:`encoder` reads; ``projection`` among them is P of the version being served),
    ``fixed_fields`` (those of them that never change once the first round wrote them, so a
    replica may keep them) and ``grown_fields`` (those that change only by rows appended, so
    a replica holding as many stored bytes of one holds it whole).
    """

    name: str
    bits: int
    targets: tuple[str, ...]
    modalities: tuple[str, ...]
    encoder_fields: tuple[str, ...]
    fixed_fields: tuple[str, ...]
    grown_fields: tuple[str, ...]

    def learn(self, state: Any | None, features: np.ndarray[Any, Any], labels: ClassLists,
              text: np.ndarray[Any, Any] | None = None,
              ids: np.ndarray[Any, Any] | None = None) -> LearnResult:
        """One round on a chunk: ``features`` n × d, ``labels`` the items' class lists,
        ``text`` the text side of pairs (cross-modal methods), ``ids`` the items' ids (a
        method may ignore them). ``state`` None: the first round. Nothing passed in is
        mutated."""
        ...

    def state_from_arrays(self, state: Arrays, model: Arrays | None = None) -> Any:
        """The state object of stored arrays (``model``: the arrays of the model version the
        state names, for methods that keep one)."""
        ...

    def encoder(self, state: Arrays, model: Arrays | None = None) -> Encoder:
        """An encoder from stored arrays: ``state`` needs only ``encoder_fields``."""
        ...

    def round_bytes(self, n: int, label_pairs: int, n_classes: int) -> int:
        """Peak bytes a round over ``n`` items with ``label_pairs`` (item, class) pairs and
        ``n_classes`` classes is expected to need (the worker's memory budget)."""
        ...


@dataclass(frozen=True)
class MethodSpec:
    """What a factory builds a method from: the feature dimension ``dim``, the method's own
    ``settings`` (JSON-ready, with ``bits``) and the array ``backend`` to compute on (methods
    that run elsewhere, e.g. PyTorch, ignore it)."""

    dim: int
    settings: Mapping[str, Any]
    backend: Backend = field(default_factory=lambda: get_backend("numpy"))


MethodFactory = Callable[[MethodSpec], Method]
_REGISTRY: dict[str, MethodFactory] = {}


def register(name: str, factory: MethodFactory) -> None:
    """Make ``name`` a method (re-registering a name replaces its factory)."""
    _REGISTRY[name] = factory


def _load_builtins() -> None:
    for module in _BUILTIN:
        importlib.import_module(module)


def get(name: str) -> MethodFactory:
    """The factory registered as ``name``; KeyError naming the known methods otherwise."""
    if name not in _REGISTRY:
        _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(names())}") from None


def names() -> list[str]:
    """Every registered method, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def create(name: str, spec: MethodSpec) -> Method:
    """``get(name)(spec)``."""
    return get(name)(spec)


def stack_rows(blocks: list[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    """Row blocks as one array; integer blocks (word ids) of different widths are padded
    with −1 (the pad id) to the widest."""
    if not blocks:
        raise ValueError("no blocks to stack")
    if blocks[0].dtype.kind in "iu":
        width = max(b.shape[1] for b in blocks)
        blocks = [np.pad(b, ((0, 0), (0, width - b.shape[1])), constant_values=-1)
                  for b in blocks]
    return np.concatenate(blocks)


def target_field(target: str) -> str:
    """The segment field holding a target's codes: ``codes`` for "pairs", else
    ``<target>_codes``."""
    return "codes" if target == PAIRS else f"{target}_codes"
