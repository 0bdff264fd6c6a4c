"""An ECMH model as a flat ``dict[str, numpy array]`` and back, bit-identically, without pickle.

Keys are ``inet.<state_dict name>`` and ``tnet.<state_dict name>`` (parameters and buffers,
e.g. ``tnet.embedding.blocks.1`` for the second vocabulary block) plus ``config_json``: the
:class:`NetworkConfig` as UTF-8 JSON bytes in a uint8 array. An objective head (DHD's proxies,
IDCWH's centers: trained with the networks, needed to extend them) is stored beside them as
``head.blocks.<i>`` (its row blocks, in the order they were added) by :func:`head_to_arrays`.
The memory layer's codec stores each array as raw bytes with dtype and shape, which is all a
model needs to be rebuilt.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hashstream.solver.ecmh.dhd import DHDHead
from hashstream.solver.ecmh.idcwh import IDCWHHead
from hashstream.solver.ecmh.losses import ObjectiveHead
from hashstream.solver.ecmh.networks import ECMHModel, build_model
from hashstream.solver.ecmh.settings import NetworkConfig, TrainSettings

CONFIG_KEY = "config_json"
HEAD_PREFIX = "head.blocks."

Arrays = dict[str, np.ndarray[Any, Any]]


class StateError(ValueError):
    """Stored arrays do not describe a model: missing, extra or misshapen entries."""


def _named_tensors(model: ECMHModel) -> dict[str, torch.Tensor]:
    out = {f"inet.{k}": v for k, v in model.inet.state_dict().items()}
    out.update({f"tnet.{k}": v for k, v in model.tnet.state_dict().items()})
    return out


def to_arrays(model: ECMHModel) -> Arrays:
    """Every parameter and buffer as a host NumPy copy (dtype and shape kept), plus the config."""
    arrays: Arrays = {k: v.detach().cpu().numpy().copy() for k, v in _named_tensors(model).items()}
    arrays[CONFIG_KEY] = np.frombuffer(model.config.to_json().encode("utf-8"),
                                       dtype=np.uint8).copy()
    return arrays


def config_from_arrays(arrays: Arrays) -> NetworkConfig:
    """The architecture stored under ``config_json``."""
    if CONFIG_KEY not in arrays:
        raise StateError(f"no {CONFIG_KEY!r} entry")
    try:
        return NetworkConfig.from_json(bytes(np.asarray(arrays[CONFIG_KEY], np.uint8)).decode())
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise StateError(f"bad {CONFIG_KEY!r}: {exc}") from exc


def from_arrays(arrays: Arrays, device: torch.device | None = None) -> ECMHModel:
    """Inverse of :func:`to_arrays`: the same architecture holding exactly the stored values."""
    config = config_from_arrays(arrays)
    model = build_model(config, device=device or torch.device("cpu"))
    expected = _named_tensors(model)
    stored = set(arrays) - {CONFIG_KEY}
    if stored != set(expected):
        missing, extra = sorted(set(expected) - stored), sorted(stored - set(expected))
        raise StateError(f"arrays do not match the config: missing {missing}, extra {extra}")
    with torch.no_grad():
        for name, tensor in expected.items():
            value = np.asarray(arrays[name])
            if tuple(value.shape) != tuple(tensor.shape):
                raise StateError(f"{name}: shape {value.shape}, expected {tuple(tensor.shape)}")
            src = torch.from_numpy(np.array(value, copy=True))  # writable, contiguous
            if src.dtype != tensor.dtype:
                raise StateError(f"{name}: dtype {src.dtype}, expected {tensor.dtype}")
            tensor.copy_(src)  # state_dict tensors share storage with the modules
    model.inet.eval()
    model.tnet.eval()
    return model


def same_state(a: ECMHModel, b: ECMHModel) -> bool:
    """True when two models have the same config and bit-identical parameters and buffers."""
    ta, tb = _named_tensors(a), _named_tensors(b)
    return a.config == b.config and ta.keys() == tb.keys() and all(
        ta[k].dtype == tb[k].dtype and torch.equal(ta[k].cpu(), tb[k].cpu()) for k in ta)


def split_head(arrays: Arrays) -> tuple[Arrays, Arrays]:
    """(the model's arrays, the head's ``head.*`` arrays) of one stored model version."""
    head = {k: v for k, v in arrays.items() if k.startswith("head.")}
    return {k: v for k, v in arrays.items() if not k.startswith("head.")}, head


def head_to_arrays(head: ObjectiveHead | None) -> Arrays:
    """The head's row blocks as ``head.blocks.<i>`` (float32 host copies); {} for no head."""
    if head is None:
        return {}
    return {f"{HEAD_PREFIX}{i}": p.detach().cpu().numpy().copy()
            for i, p in enumerate(head.blocks)}


def head_from_arrays(arrays: Arrays, settings: TrainSettings,
                     device: torch.device | None = None) -> ObjectiveHead | None:
    """Inverse of :func:`head_to_arrays` for ``settings.loss`` (None when it is 'ecmh' or no
    head was stored: a fresh one is made when training continues)."""
    count = sum(1 for k in arrays if k.startswith(HEAD_PREFIX))
    if settings.loss == "ecmh" or count == 0:
        return None
    try:
        blocks = [np.asarray(arrays[f"{HEAD_PREFIX}{i}"]) for i in range(count)]
    except KeyError as exc:
        raise StateError(f"head blocks are not numbered 0..{count - 1}: {exc}") from exc
    rows, bits = blocks[0].shape
    head: ObjectiveHead
    if settings.loss == "dhd":  # the init bound depends on the first block, as when trained
        head = DHDHead(rows, bits, settings.dhd)
    else:
        head = IDCWHHead(rows, bits, settings.idcwh)
    if any(b.ndim != 2 or b.shape[1] != bits for b in blocks):
        raise StateError(f"head blocks must all be k × {bits}")
    head.blocks = nn.ParameterList([nn.Parameter(torch.from_numpy(np.array(b, copy=True)))
                                    for b in blocks])
    return head.to(device or torch.device("cpu"))

