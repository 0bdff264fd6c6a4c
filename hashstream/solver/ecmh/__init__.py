"""ECMH, extensible cross-modal hashing (Chen et al., IJCAI 2019; ``seeds/ecmh.txt``).

INet and TNet (``networks``), the agreement and similarity matrices (``agreement``, Eq. 2–3,
8), the losses (``losses``, Eq. 4–7), Algorithm 1 (``train``), Algorithm 2 and the
fine-tuning baseline (``extend``), and model ↔ arrays persistence (``state_io``). PyTorch;
CPU here, CUDA where present, chosen once by :func:`resolve_device`.
"""

from hashstream.solver.ecmh.agreement import agreement_matrix, similarity, unified_codes
from hashstream.solver.ecmh.extend import ExtensionResult, extend, fine_tune
from hashstream.solver.ecmh.losses import (
    common_space_loss,
    distillation_loss,
    hash_loss,
    objective,
)
from hashstream.solver.ecmh.networks import (
    ECMHModel,
    build_model,
    grow_vocabulary,
    image_representations,
    resolve_device,
    sign,
    text_representations,
)
from hashstream.solver.ecmh.settings import PAD_ID, NetworkConfig, TrainSettings
from hashstream.solver.ecmh.state_io import StateError, from_arrays, same_state, to_arrays
from hashstream.solver.ecmh.train import (
    CoreResult,
    PairedData,
    core_algorithm,
    paired_data,
    train_from_scratch,
)

__all__ = [
    "PAD_ID", "CoreResult", "ECMHModel", "ExtensionResult", "NetworkConfig", "PairedData",
    "StateError", "TrainSettings", "agreement_matrix", "build_model", "common_space_loss",
    "core_algorithm", "distillation_loss", "extend", "fine_tune", "from_arrays",
    "grow_vocabulary", "hash_loss", "image_representations", "objective", "paired_data",
    "resolve_device", "same_state", "sign", "similarity", "text_representations",
    "to_arrays", "train_from_scratch", "unified_codes",
]
