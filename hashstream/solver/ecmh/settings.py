"""Settings of the ECMH deep path: the shape of INet/TNet and the hyper-parameters of training.

``NetworkConfig`` is what a stored model must carry to be rebuilt (it travels with the weights);
``TrainSettings`` is how a training or extension run behaves and is never stored with a model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

TextKind = Literal["dense", "tokens"]
OptimizerName = Literal["sgd", "adam"]
CommonLoss = Literal["likelihood", "paper"]
Objective = Literal["ecmh", "dhd", "idcwh"]
CenterUpdate = Literal["sign", "dcc"]

PAD_ID = -1
"""Token id of padding. Every negative id is padding, and so is every id at or past the
vocabulary size when a text is encoded (an unseen word carries no learnt vector yet)."""


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of INet (image MLP) and TNet (text MLP or Deep Averaging Network).

    ``image_hidden`` / ``text_hidden`` are the widths of the hidden ReLU layers (their length is
    the depth); the last layer has ``bits`` tanh outputs (paper §2.3). An empty tuple is the
    linear option: the net is one Linear layer and tanh on the standardised input (issue 14:
    the deep path must at least match a linear map). For ``text_kind='tokens'``
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
    image_hidden: tuple[int, ...] = (1024,)
    text_hidden: tuple[int, ...] = (1024,)

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
            if key in raw:  # absent: the field's default (an absent width list is no linear net)
                raw[key] = tuple(int(v) for v in raw[key])
        return cls(**raw)


@dataclass(frozen=True)
class DHDSettings:
    """Deep Hash Distillation (Jang et al., ECCV 2022; ``seeds/dhd.txt``) as the objective of
    INet/TNet: L_HP + λ1 L_SdH + λ2 L_bce-Q (Eq. 8), see :mod:`hashstream.solver.ecmh.dhd`.

    Paper defaults: ``lambda_sdh`` = λ1 = 0.1, ``lambda_q`` = λ2 = 0.1, ``sigma`` = 0.5 (the
    Gaussian estimators of Eq. 5), ``teacher_scale`` = s_T = 0.5 (non-AlexNet backbones).
    ``tau`` (Eq. 4) is 0.2–0.6 in the paper depending on the data set. Feature-space views
    replace the image transformations: each of dropout, Gaussian noise and mixing happens to a
    row with its ``*_prob`` in the strong (student) view and with ``*_prob`` × s_T in the weak
    (teacher) view; token text gets word dropout (``dropout_*``) only.
    ``quantize_proxies`` applies L_bce-Q to the proxies as well (paper §3.2; the authors' code
    leaves it out).
    """

    tau: float = 0.4
    lambda_sdh: float = 0.1
    lambda_q: float = 0.1
    sigma: float = 0.5
    teacher_scale: float = 0.5
    dropout_prob: float = 0.5
    dropout_rate: float = 0.2
    noise_prob: float = 0.5
    noise_std: float = 0.3
    mix_prob: float = 0.5
    mix_max: float = 0.3
    quantize_proxies: bool = True

    def __post_init__(self) -> None:
        if self.tau <= 0 or self.sigma <= 0:
            raise ValueError("tau and sigma must be positive")
        if min(self.lambda_sdh, self.lambda_q, self.noise_std) < 0:
            raise ValueError("lambda_sdh, lambda_q and noise_std must be non-negative")
        for name in ("teacher_scale", "dropout_prob", "noise_prob", "mix_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")
        if not 0 <= self.dropout_rate < 1 or not 0 <= self.mix_max < 0.5:
            raise ValueError("dropout_rate must be in [0, 1) and mix_max in [0, 0.5) (a mixed "
                             "row keeps the label of its main item)")


@dataclass(frozen=True)
class IDCWHSettings:
    """Improved Deep Classwise Hashing (Zhang & Yan, ICPR 2020; ``seeds/idcwh.txt``) as the
    objective of INet/TNet: L_clw + γ L_csl + β L_quant, see
    :mod:`hashstream.solver.ecmh.idcwh`.

    ``sigma`` is σ of the normalised Gaussian (L_clw), ``gamma`` weighs the center similarity
    loss and ``quant`` (β) the quantisation loss; the slides give no values. ``center_update``
    estimates the binary centers U of the classes in a mini-batch: 'sign' is IDCWH's
    u_j = sgn(Σ b) (sgn(0) = +1); 'dcc' is SDOH-HC's discrete center step (``seeds/sdoh-hc.txt``
    Eq. 1: min θ‖C − Uᵀ‖² + η‖r L̂ − B Uᵀ‖² over binary U, by DCC from the 'sign' estimate,
    C the Hadamard centers) with ``dcc_theta`` = θ, ``dcc_eta`` = η and ``dcc_sweeps`` sweeps.
    """

    sigma: float = 2.0
    gamma: float = 1.0
    quant: float = 0.01
    center_update: CenterUpdate = "sign"
    dcc_theta: float = 1.0
    dcc_eta: float = 1.0
    dcc_sweeps: int = 3

    def __post_init__(self) -> None:
        if self.sigma <= 0 or min(self.gamma, self.quant, self.dcc_theta, self.dcc_eta) < 0:
            raise ValueError("sigma must be positive; gamma, quant, dcc_theta and dcc_eta "
                             "non-negative")
        if self.center_update not in ("sign", "dcc"):
            raise ValueError(f"center_update must be 'sign' or 'dcc', not "
                             f"{self.center_update!r}")
        if self.dcc_sweeps < 1:
            raise ValueError("dcc_sweeps must be positive")


DISTILL_WEIGHTS: dict[str, float] = {"ecmh": 300.0, "dhd": 10.0, "idcwh": 10.0}
"""Default weight of L_d per objective (``TrainSettings.distill_weight`` None). ECMH's was
chosen on a validation split of Wiki's training items (issue 14 item 5, bench/RESULTS.md);
DHD's and IDCWH's are issue 7's."""


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of Algorithms 1 and 2.

    From the paper (§3.1): ``alpha`` (agreement threshold, Eq. 2) in [0.1, 0.15], ``beta`` = 0.5
    (code smoothing, Eq. 7), the learning rate decayed by 5 % every 100 steps. The paper's
    batch of 500 and optimiser, SGD at learning rate 1.5 (``optimizer='sgd', lr=1.5``), leave
    MLP heads on feature vectors under-trained (a few hundred steps with the paper's loss
    scalings); Adam at step size 3e-3 (the earlier default) falls onto a plateau of saturated
    tanh units early. The defaults, Adam at 1e-3 on batches of 100 for 100 epochs, were
    chosen on a validation split of Wiki's training items (issue 14 item 5, bench/RESULTS.md).
    ``epochs`` are passes
    of Algorithm 1 (one INet and one TNet pass, then the code update Eq. 8) when training from
    scratch, ``extend_epochs`` in stage 3 of an extension (and in plain fine-tuning),
    ``warmup_epochs`` in stage 1.
    ``train_old_embeddings``: whether stage 3 may move the word vectors of the old vocabulary
    (the paper unfreezes every layer but the CNN; ``False`` keeps them bit-identical).
    ``freeze_first_layer``: whether stage 3 keeps the first hidden layer of INet and of TNet's
    head fixed (the analogue of the paper's frozen CNN); off by default, as it measured no
    better on the validation split once L_d is weighted.
    ``common_loss`` picks the form of L_c (see :func:`~hashstream.solver.ecmh.losses.
    common_space_loss`: Eq. 6 as printed collapses, so the default is DCMH's likelihood).
    ``device`` is 'auto' (CUDA when usable, else CPU), 'cpu' or 'cuda'.
    ``loss`` is the training objective of INet/TNet: 'ecmh' (L_c + L_h, the paper), 'dhd'
    (``dhd`` settings) or 'idcwh' (``idcwh`` settings); the latter two train class proxies or
    centers shared by both modalities and replace L_c and L_h. In an extension every
    objective is combined with ECMH's L_d, weighted as ``distill_weight`` × the mean over the
    m × L entries of A_α ∘ (F − F_{n|θo})²; None takes the objective's default
    (:data:`DISTILL_WEIGHTS`). The paper's λ_d = 1/(m L²) is the weight 1/L: far too weak to
    hold old codes (old-code retrieval of image queries fell by 30 % on the validation split).
    ``center_weight`` weighs stage 3's term against old classes
    (:mod:`~hashstream.solver.ecmh.centers`: L_h's squared form between the new items'
    outputs and their classes' centers, old classes' the sign of their stored codes' sum, a
    new class's moved from where the old model puts its items until it is as far from the
    others as old classes are); 0 leaves it out, as the paper (and the default: on Wiki's
    validation split it lowered the all-tasks mean at every weight tried).
    """

    epochs: int = 100
    extend_epochs: int = 50
    warmup_epochs: int = 10
    batch_size: int = 100
    optimizer: OptimizerName = "adam"
    lr: float = 1e-3
    lr_decay: float = 0.95
    lr_decay_every: int = 100
    alpha: float = 0.1
    beta: float = 0.5
    train_old_embeddings: bool = True
    freeze_first_layer: bool = False
    common_loss: CommonLoss = "likelihood"
    seed: int = 0
    device: str = "auto"
    loss: Objective = "ecmh"
    distill_weight: float | None = None
    center_weight: float = 0.0
    dhd: DHDSettings = field(default_factory=DHDSettings)
    idcwh: IDCWHSettings = field(default_factory=IDCWHSettings)

    def __post_init__(self) -> None:
        # ``TrainSettings(**other.as_dict())`` gives the nested settings as dicts.
        if isinstance(self.dhd, dict):
            object.__setattr__(self, "dhd", DHDSettings(**self.dhd))
        if isinstance(self.idcwh, dict):
            object.__setattr__(self, "idcwh", IDCWHSettings(**self.idcwh))
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
        if self.loss not in ("ecmh", "dhd", "idcwh"):
            raise ValueError(f"loss must be 'ecmh', 'dhd' or 'idcwh', not {self.loss!r}")
        if self.distill_weight is not None and self.distill_weight < 0:
            raise ValueError("distill_weight must be non-negative")
        if self.center_weight < 0:
            raise ValueError("center_weight must be non-negative")

    @property
    def l_d_weight(self) -> float:
        """The weight of L_d: ``distill_weight``, or the objective's default when None."""
        if self.distill_weight is not None:
            return self.distill_weight
        return DISTILL_WEIGHTS[self.loss]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CrossModalSettings:
    """Per-index settings of the ECMH method in the service (network shape, training budget
    and ``loss``, the objective of INet/TNet as ``TrainSettings.loss``; ``distill_weight``,
    ``freeze_first_layer`` and ``center_weight`` as there). Empty width tuples make the nets
    linear."""

    text_kind: TextKind = "dense"
    text_dim: int = 0
    image_hidden: tuple[int, ...] = (1024,)
    text_hidden: tuple[int, ...] = (1024,)
    embed_dim: int = 128
    epochs: int = 60
    extend_epochs: int = 30
    warmup_epochs: int = 10
    seed: int = 0
    loss: Objective = "ecmh"
    distill_weight: float | None = None
    freeze_first_layer: bool = False
    center_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.loss not in ("ecmh", "dhd", "idcwh"):
            raise ValueError(f"loss must be 'ecmh', 'dhd' or 'idcwh', not {self.loss!r}")
        if self.text_kind not in ("dense", "tokens"):
            raise ValueError(f"text_kind must be 'dense' or 'tokens', not {self.text_kind!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CrossModalSettings:
        d = dict(data)
        for key in ("image_hidden", "text_hidden"):
            if key in d:
                d[key] = tuple(int(w) for w in d[key])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def train_settings(self) -> TrainSettings:
        """The training settings of this index's rounds (on the CPU)."""
        return TrainSettings(epochs=self.epochs, extend_epochs=self.extend_epochs,
                             warmup_epochs=self.warmup_epochs, seed=self.seed, device="cpu",
                             loss=self.loss, distill_weight=self.distill_weight,
                             freeze_first_layer=self.freeze_first_layer,
                             center_weight=self.center_weight)

