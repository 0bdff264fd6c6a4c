"""ECMH as a :class:`~hashstream.solver.method.Method` ("ecmh"): rounds of image–text pairs.

The first round trains INet and TNet from scratch (Algorithm 1); a later round whose chunk
brings classes never seen extends the model with that chunk alone (Algorithm 2) and makes a new
model version; other rounds encode their pairs with the current model. Old codes are never
rewritten: a round only adds its own pairs' codes, under three targets: "pairs" the unified
sign(F + G) (what image→text and text→image queries rank against), "image" sign(F) and "text"
sign(G) (searches within one modality), all from
:func:`~hashstream.solver.ecmh.networks.encode_pairs`.

``CrossModalSettings.loss`` picks the objective ('ecmh', 'dhd', 'idcwh'); the DHD proxies or
IDCWH centers travel with the model version that trained them (``head.blocks.<i>`` beside the
weights, :mod:`~hashstream.solver.ecmh.state_io`), so an extension continues from them.

State arrays: ``model_version`` (0-d), ``known_classes`` (uint8 per class) and, per class,
``class_code_sums`` (c × L int32, the sum of the ±1 unified codes its pairs were given) and
``class_code_counts`` (int64): the class centers sgn(sum) that an extension's term against
old classes (``center_weight``, :mod:`~hashstream.solver.ecmh.centers`) keeps new classes
away from (a state stored without them starts from zeros: no centers known). Codes a delete
later removes stay in the sums. The model arrays are the version's weights and head. PyTorch
is imported on first use, not with this module, so that the registry does not load it for
other methods.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hashstream.solver.class_lists import ClassLists
from hashstream.solver.ecmh.settings import CrossModalSettings, NetworkConfig
from hashstream.solver.method import PAIRS, Arrays, LearnResult, MethodSpec, register
from hashstream.solver.metrics import pack_codes

if TYPE_CHECKING:
    from hashstream.solver.ecmh.losses import ObjectiveHead
    from hashstream.solver.ecmh.networks import ECMHModel


@dataclass
class ECMHState:
    """The current model (None before the first round), its version, the classes it has been
    trained or extended on, and the objective head of 'dhd' / 'idcwh' (None for 'ecmh')."""

    model: ECMHModel | None = None
    model_version: int = 0
    known: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    head: ObjectiveHead | None = None
    code_sums: np.ndarray[Any, Any] = field(
        default_factory=lambda: np.zeros((0, 0), dtype=np.int32))
    code_counts: np.ndarray[Any, Any] = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64))

    def to_arrays(self) -> Arrays:
        return {"model_version": np.asarray(self.model_version),
                "known_classes": self.known.astype(np.uint8),
                "class_code_sums": self.code_sums, "class_code_counts": self.code_counts}

    def centers(self) -> np.ndarray[Any, Any]:
        """The class centers of the codes so far (c × L float32, 0 rows for classes
        without codes)."""
        from hashstream.solver.ecmh.centers import center_rows_from_sums

        return center_rows_from_sums(self.code_sums, self.code_counts)


def _added_sums(state: ECMHState, dense: np.ndarray[Any, Any], codes: np.ndarray[Any, Any]
                ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The state's per-class code sums and counts grown to the round's classes, plus the
    round's pairs (dense n × c labels, ±1 codes n × L)."""
    c, bits = dense.shape[1], codes.shape[1]
    sums = np.zeros((c, bits), dtype=np.int32)
    counts = np.zeros(c, dtype=np.int64)
    old = state.code_sums
    if old.size:
        sums[:old.shape[0]] = old
        counts[:state.code_counts.shape[0]] = state.code_counts
    sums += (dense.T.astype(np.int32) @ codes.astype(np.int32)).astype(np.int32)
    counts += dense.sum(axis=0).astype(np.int64)
    return sums, counts


class ECMHEncoder:
    """sign(INet(q)) for image queries, sign(TNet(q)) for text queries, packed."""

    modalities: tuple[str, ...] = ("image", "text")

    def __init__(self, model: ECMHModel) -> None:
        self.model = model
        self.bits = model.config.bits

    def encode(self, queries: np.ndarray[Any, Any], modality: str = "image"
               ) -> np.ndarray[Any, Any]:
        return pack_codes(self.project(queries, modality) >= 0)

    def project(self, queries: np.ndarray[Any, Any], modality: str = "image"
                ) -> np.ndarray[Any, Any]:
        """INet(q) or TNet(q) (float32), the representation whose sign is the code."""
        from hashstream.solver.ecmh.networks import project_modality

        return project_modality(self.model, queries, modality)


class ECMHMethod:
    """ECMH rounds with one index's settings (CPU)."""

    name: str = "ecmh"
    targets: tuple[str, ...] = (PAIRS, "image", "text")
    modalities: tuple[str, ...] = ("image", "text")
    encoder_fields: tuple[str, ...] = ("model_version",)
    fixed_fields: tuple[str, ...] = ()
    grown_fields: tuple[str, ...] = ()

    def __init__(self, settings: CrossModalSettings, bits: int, dim: int) -> None:
        self.settings = settings
        self.bits = bits
        self.dim = dim

    def _network_config(self, text: np.ndarray[Any, Any]) -> NetworkConfig:
        s = self.settings
        tokens = s.text_kind == "tokens"
        vocab = int(text.max(initial=-1)) + 1 if tokens else 0
        return NetworkConfig(bits=self.bits, image_dim=self.dim, text_kind=s.text_kind,
                             text_dim=s.text_dim, vocab_blocks=(max(vocab, 1),) if tokens else (),
                             embed_dim=s.embed_dim, image_hidden=s.image_hidden,
                             text_hidden=s.text_hidden)

    def learn(self, state: ECMHState | None, features: np.ndarray[Any, Any],
              labels: ClassLists, text: np.ndarray[Any, Any] | None = None,
              ids: np.ndarray[Any, Any] | None = None) -> LearnResult:
        """Train (first round), extend (unseen classes) or encode; the networks train on dense
        n × c label rows (c: the classes so far)."""
        from hashstream.solver.ecmh.extend import extend
        from hashstream.solver.ecmh.networks import encode_pairs
        from hashstream.solver.ecmh.state_io import head_to_arrays, to_arrays
        from hashstream.solver.ecmh.train import paired_data, train_from_scratch

        if text is None:
            raise ValueError("ecmh learns image–text pairs: text is required")
        state = state or ECMHState()
        started = time.perf_counter()
        c = max(labels.n_classes, len(state.known))
        dense = labels.to_dense(c)
        known = np.zeros(c, dtype=bool)
        known[:len(state.known)] = state.known
        present = dense.any(axis=0)
        unseen = present & ~known
        train = self.settings.train_settings()
        model, head, version, action = state.model, state.head, state.model_version, "encode"
        history: list[dict[str, float]] = []
        if model is None:
            core = train_from_scratch(self._network_config(text), features, text, dense, train)
            model, head, version, action = core.model, core.head, 1, "train"
            history = core.history
        elif unseen.any():
            import torch

            data = paired_data(model.config, features, text, dense, model.device)
            ext = extend(model, data, train, head=head,
                         old_centers=torch.as_tensor(state.centers()) if state.code_sums.size
                         else None)
            model, head, version, action = ext.model, ext.core.head, version + 1, "extend"
            history = ext.core.history
        learn_s = time.perf_counter() - started
        codes = encode_pairs(model, features, text)
        sums, counts = _added_sums(state, dense, codes["pairs"])
        new = ECMHState(model, version, known | present, head, sums, counts)
        return LearnResult(
            codes={t: pack_codes(codes[t]) for t in self.targets}, state=new,
            state_arrays=new.to_arrays(), encoder=ECMHEncoder(model),
            model=None if action == "encode" else {**to_arrays(model), **head_to_arrays(head)},
            loss={k: float(v) for k, v in history[-1].items() if k != "epoch"} if history else {},
            seconds={action: round(learn_s, 6),
                     "encode": round(time.perf_counter() - started - learn_s, 6)},
            record={"model_version": version, "action": action,
                    "unseen_classes": np.flatnonzero(unseen).tolist()})

    def state_from_arrays(self, state: Arrays, model: Arrays | None = None) -> ECMHState:
        from hashstream.solver.ecmh.state_io import from_arrays, head_from_arrays, split_head

        version = int(state["model_version"])
        known = np.asarray(state["known_classes"]).astype(bool)
        sums = np.asarray(state.get("class_code_sums", np.zeros((0, 0))), dtype=np.int32)
        counts = np.asarray(state.get("class_code_counts", np.zeros(0)), dtype=np.int64)
        if version == 0 or model is None:
            return ECMHState(None, version, known, None, sums, counts)
        nets, head = split_head(model)
        return ECMHState(from_arrays(nets), version, known,
                         head_from_arrays(head, self.settings.train_settings()), sums, counts)

    def encoder(self, state: Arrays, model: Arrays | None = None) -> ECMHEncoder:
        from hashstream.solver.ecmh.state_io import from_arrays, split_head

        if model is None:
            raise ValueError("an ecmh encoder needs the arrays of a model version")
        return ECMHEncoder(from_arrays(split_head(model)[0]))

    def round_bytes(self, n: int, label_pairs: int, n_classes: int) -> int:
        s = self.settings
        widths = self.dim + max(s.text_dim, s.embed_dim) + sum(s.image_hidden) \
            + sum(s.text_hidden) + 8 * self.bits
        # activations and buffers per item (float32, a few live copies), the dense labels,
        # and S (Eq. 3) kept whole up to 128 MiB
        return 4 * n * (4 * widths + n_classes) + min(n * n, 1 << 27)


def _factory(spec: MethodSpec) -> ECMHMethod:
    settings = CrossModalSettings.from_dict(dict(spec.settings))
    return ECMHMethod(settings, int(spec.settings.get("bits", 32)), spec.dim)


register("ecmh", _factory)
