"""An ECMH model as a flat ``dict[str, numpy array]`` and back, bit-identically, without pickle.

Keys are ``inet.<state_dict name>`` and ``tnet.<state_dict name>`` (parameters and buffers,
e.g. ``tnet.embedding.blocks.1`` for the second vocabulary block) plus ``config_json``: the
:class:`NetworkConfig` as UTF-8 JSON bytes in a uint8 array. The memory layer's codec stores
each array as raw bytes with dtype and shape, which is all a model needs to be rebuilt.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hashstream.solver.ecmh.networks import ECMHModel, build_model
from hashstream.solver.ecmh.settings import NetworkConfig

CONFIG_KEY = "config_json"

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
