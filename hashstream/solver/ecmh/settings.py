"""Settings of the ECMH deep path: the shape of INet/TNet and the hyper-parameters of training.

``NetworkConfig`` is what a stored model must carry to be rebuilt (it travels with the weights);
``TrainSettings`` is how a training or extension run behaves and is never stored with a model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

TextKind = Literal["dense", "tokens"]
OptimizerName = Literal["sgd", "adam"]
CommonLoss = Literal["likelihood", "paper"]

PAD_ID = -1
"""Token id of padding. Every negative id is padding, and so is every id at or past the
vocabulary size when a text is encoded (an unseen word carries no learnt vector yet)."""


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of INet (image MLP) and TNet (text MLP or Deep Averaging Network).

    ``image_hidden`` / ``text_hidden`` are the widths of the hidden ReLU layers (their length is
    the depth); the last layer has ``bits`` tanh outputs (paper §2.3). For ``text_kind='tokens'``
    TNet averages word vectors of size ``embed_dim`` (DAN, Iyyer et al. 2015) before its MLP,
    and ``vocab_blocks`` lists the rows added at each vocabulary growth (their sum is the
    vocabulary size); for ``'dense'`` TNet is an MLP over ``text_dim`` features.
    """

    bits: int
    image_dim: int
    text_kind: TextKind = "dense"
    text_dim: int = 0
    vocab_blocks: tuple[int, ...] = ()
    embed_dim: int = 256
    image_hidden: tuple[int, ...] = (512,)
    text_hidden: tuple[int, ...] = (512,)

    def __post_init__(self) -> None:
        if self.bits < 1 or self.image_dim < 1:
            raise ValueError("bits and image_dim must be positive")
        if self.text_kind not in ("dense", "tokens"):
            raise ValueError(f"text_kind must be 'dense' or 'tokens', not {self.text_kind!r}")
        if self.text_kind == "dense" and self.text_dim < 1:
            raise ValueError("dense text needs text_dim >= 1")
        if self.text_kind == "tokens" and (not self.vocab_blocks
                                           or min(self.vocab_blocks) < 1 or self.embed_dim < 1):
            raise ValueError("token text needs non-empty positive vocab_blocks and embed_dim")
        if any(w < 1 for w in (*self.image_hidden, *self.text_hidden)):
            raise ValueError("hidden widths must be positive")

    @property
    def vocab_size(self) -> int:
        return sum(self.vocab_blocks)

    def grown(self, new_rows: int) -> NetworkConfig:
        """The same architecture with ``new_rows`` more word vectors in a new block."""
        if self.text_kind != "tokens":
            raise ValueError("only token text has a vocabulary to grow")
        if new_rows < 1:
            raise ValueError("a vocabulary growth adds at least one row")
        return replace(self, vocab_blocks=(*self.vocab_blocks, new_rows))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NetworkConfig:
        raw: dict[str, Any] = json.loads(text)
        for key in ("vocab_blocks", "image_hidden", "text_hidden"):
            raw[key] = tuple(int(v) for v in raw.get(key, ()))
        return cls(**raw)


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of Algorithms 1 and 2.

    From the paper (§3.1): ``alpha`` (agreement threshold, Eq. 2) in [0.1, 0.15], ``beta`` = 0.5
    (code smoothing, Eq. 7), batch 500, the learning rate decayed by 5 % every 100 steps. The
    paper's optimiser is SGD at learning rate 1.5 (``optimizer='sgd', lr=1.5``); with MLP
    heads on feature vectors and the paper's loss scalings (gradients of order 1/L) it trains
    too slowly (Wiki, all 10 classes, 32 bits, 100 epochs, image→text / text→image mAP:
    0.17 / 0.42 against 0.26 / 0.61 with Adam), so the default is Adam with step size 3e-3,
    decayed on the same schedule. ``epochs`` are passes
    of Algorithm 1 (one INet and one TNet pass, then the code update Eq. 8) when training from
    scratch, ``extend_epochs`` in stage 3 of an extension (and in plain fine-tuning),
    ``warmup_epochs`` in stage 1.
    ``train_old_embeddings``: whether stage 3 may move the word vectors of the old vocabulary
    (the paper unfreezes every layer but the CNN; ``False`` keeps them bit-identical).
    ``common_loss`` picks the form of L_c (see :func:`~hashstream.solver.ecmh.losses.
    common_space_loss`: Eq. 6 as printed collapses, so the default is DCMH's likelihood).
    ``device`` is 'auto' (CUDA when usable, else CPU), 'cpu' or 'cuda'.
    """

    epochs: int = 100
    extend_epochs: int = 50
    warmup_epochs: int = 10
    batch_size: int = 500
    optimizer: OptimizerName = "adam"
    lr: float = 3e-3
    lr_decay: float = 0.95
    lr_decay_every: int = 100
    alpha: float = 0.1
    beta: float = 0.5
    train_old_embeddings: bool = True
    common_loss: CommonLoss = "likelihood"
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if min(self.epochs, self.extend_epochs, self.warmup_epochs) < 0:
            raise ValueError("epoch counts must be non-negative")
        if self.batch_size < 1 or self.lr_decay_every < 1:
            raise ValueError("batch_size and lr_decay_every must be positive")
        if self.lr <= 0 or not 0 < self.lr_decay <= 1:
            raise ValueError("lr must be positive and lr_decay in (0, 1]")
        if self.alpha < 0 or self.beta <= 0:
            raise ValueError("alpha must be non-negative and beta positive")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', not {self.optimizer!r}")
        if self.common_loss not in ("likelihood", "paper"):
            raise ValueError(f"common_loss must be 'likelihood' or 'paper', not "
                             f"{self.common_loss!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', not {self.device!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
