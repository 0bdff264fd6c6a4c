"""INet and TNet of ECMH (paper §2.3): MLP hash heads with tanh outputs in (-1, 1), and a Deep
Averaging Network over word ids whose vocabulary grows by appending rows, never touching old ones.

The paper's INet is VGG-19 with a new last layer; here images arrive as feature vectors, so INet
is the MLP head alone (``image_hidden`` sets depth and width). Token text goes through a DAN:
word vectors are averaged over the non-padding ids of a text and fed to an MLP head (the paper's
2000-d sentence vector is ``embed_dim``). Dense text features skip the embedding.
Every function here returns a new model; none changes the one it is given.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hashstream.solver.ecmh.settings import NetworkConfig

_ENCODE_BATCH = 4096


def resolve_device(name: str = "auto") -> torch.device:
    """The compute device, chosen once: 'auto' is CUDA when usable, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but CUDA is not available")
    return torch.device(name)


class MLPHead(nn.Module):
    """Standardise the input, then Linear–ReLU layers and a Linear layer to ``bits`` tanh units.

    The standardiser (``mean``, ``scale``) is fitted once on the data a model is trained on from
    scratch and then frozen, as buffers, so an extended model sees inputs exactly as before.
    """

    mean: Tensor
    scale: Tensor

    def __init__(self, in_dim: int, hidden: tuple[int, ...], bits: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("scale", torch.ones(in_dim))
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, bits))
        self.layers = nn.Sequential(*layers)

    def fit_standardizer(self, x: Tensor) -> None:
        """Set mean and scale from a sample of inputs (rows)."""
        self.mean.copy_(x.mean(dim=0))
        self.scale.copy_(1.0 / (x.std(dim=0) + 1e-6))

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.layers((x - self.mean) * self.scale)
        return torch.tanh(out)

    def trainable(self, freeze_first_layer: bool = False) -> Iterator[nn.Parameter]:
        """The head's parameters, without the first Linear layer's when ``freeze_first_layer``
        and the head has a hidden layer (a linear head's one layer always trains)."""
        linears = [m for m in self.layers if isinstance(m, nn.Linear)]
        frozen = linears[0] if freeze_first_layer and len(linears) > 1 else None
        for layer in linears:
            if layer is not frozen:
                yield from layer.parameters()


class GrowableEmbedding(nn.Module):
    """Word vectors held as row blocks, one per vocabulary growth; ``forward`` averages them.

    A growth appends a block; earlier blocks are the same Parameter objects, so their values
    stay bit-identical until an optimiser is given them. Ids that are negative (padding,
    ``PAD_ID``) or past the vocabulary (words never seen in training) are left out of the mean;
    a text with no known word maps to the zero vector.
    """

    def __init__(self, blocks: tuple[int, ...], dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.blocks = nn.ParameterList([nn.Parameter(torch.randn(rows, dim)) for rows in blocks])

    @property
    def vocab_size(self) -> int:
        return sum(int(p.shape[0]) for p in self.blocks)

    def weight(self) -> Tensor:
        blocks = list(self.blocks)
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=0)

    def grow(self, rows: int, generator: torch.Generator) -> None:
        """Append ``rows`` new word vectors drawn N(0, 1) like the first ones."""
        ref = self.blocks[0]
        fresh = torch.randn(rows, self.dim, generator=generator).to(ref.device, ref.dtype)
        self.blocks.append(nn.Parameter(fresh))

    def forward(self, ids: Tensor) -> Tensor:
        valid = (ids >= 0) & (ids < self.vocab_size)
        vectors = nn.functional.embedding(torch.where(valid, ids, 0), self.weight())
        weights = valid.to(vectors.dtype).unsqueeze(-1)
        count = weights.sum(dim=1).clamp_min(1.0)
        return (vectors * weights).sum(dim=1) / count


class TNet(nn.Module):
    """Text hash network: DAN (embedding mean + MLP head) for ids, MLP head for dense features."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.embedding: GrowableEmbedding | None = None
        if config.text_kind == "tokens":
            self.embedding = GrowableEmbedding(config.vocab_blocks, config.embed_dim)
            in_dim = config.embed_dim
        else:
            in_dim = config.text_dim
        self.head = MLPHead(in_dim, config.text_hidden, config.bits)

    def forward(self, text: Tensor) -> Tensor:
        x = self.embedding(text) if self.embedding is not None else text
        out: Tensor = self.head(x)
        return out


@dataclass(frozen=True)
class ECMHModel:
    """INet h^x and TNet h^y with their configuration, on one device."""

    config: NetworkConfig
    inet: MLPHead
    tnet: TNet
    device: torch.device

    def copy(self) -> ECMHModel:
        """A deep copy, so training the copy leaves this model untouched."""
        return ECMHModel(self.config, copy.deepcopy(self.inet), copy.deepcopy(self.tnet),
                         self.device)

    def image_parameters(self, freeze_first_layer: bool = False) -> Iterator[nn.Parameter]:
        """INet parameters, without its first (hidden) layer when ``freeze_first_layer``."""
        yield from self.inet.trainable(freeze_first_layer)

    def text_parameters(self, scope: str, freeze_first_layer: bool = False
                        ) -> Iterator[nn.Parameter]:
        """TNet parameters by scope: 'all', 'new_embeddings' (last vocabulary block only) or
        'all_but_old_embeddings' (the head and the last block); ``freeze_first_layer`` leaves
        out the head's first (hidden) layer."""
        emb = self.tnet.embedding
        if scope not in ("all", "new_embeddings", "all_but_old_embeddings"):
            raise ValueError(f"unknown parameter scope {scope!r}")
        if emb is not None:
            if scope == "all":
                yield from emb.blocks
            else:
                yield emb.blocks[len(emb.blocks) - 1]
        if scope != "new_embeddings":
            yield from self.tnet.head.trainable(freeze_first_layer)


def text_tensor(config: NetworkConfig, text: np.ndarray[Any, Any],
                device: torch.device) -> Tensor:
    """Text rows as the tensor TNet takes: int64 ids for tokens, float32 for dense features."""
    if config.text_kind == "tokens":
        return torch.as_tensor(np.asarray(text, dtype=np.int64), device=device)
    return torch.as_tensor(np.asarray(text, dtype=np.float32), device=device)


def image_tensor(image: np.ndarray[Any, Any], device: torch.device) -> Tensor:
    return torch.as_tensor(np.asarray(image, dtype=np.float32), device=device)


def build_model(config: NetworkConfig, *, seed: int = 0, device: torch.device | None = None,
                image: Tensor | None = None, text: Tensor | None = None) -> ECMHModel:
    """A fresh model, initialised from ``seed`` (the global torch RNG is left as it was).

    ``image`` / ``text`` (training inputs, on ``device``) fit the input standardisers.
    """
    device = device or torch.device("cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inet = MLPHead(config.image_dim, config.image_hidden, config.bits)
        tnet = TNet(config)
    inet, tnet = inet.to(device), tnet.to(device)
    with torch.no_grad():
        if image is not None:
            inet.fit_standardizer(image)
        if text is not None and config.text_kind == "dense":
            tnet.head.fit_standardizer(text)
    return ECMHModel(config, inet, tnet, device)


def grow_vocabulary(model: ECMHModel, vocab_size: int, *, seed: int = 0) -> ECMHModel:
    """A copy of ``model`` whose vocabulary has ``vocab_size`` rows; old rows are bit-identical.

    Returns a plain copy when the vocabulary is already that large.
    """
    new = model.copy()
    if model.config.text_kind != "tokens" or vocab_size <= model.config.vocab_size:
        return new
    rows = vocab_size - model.config.vocab_size
    assert new.tnet.embedding is not None
    generator = torch.Generator().manual_seed(seed)
    new.tnet.embedding.grow(rows, generator)
    return ECMHModel(model.config.grown(rows), new.inet, new.tnet, model.device)


@torch.no_grad()
def _apply(net: nn.Module, x: Tensor) -> Tensor:
    was_training = net.training
    net.eval()
    out = torch.cat([net(x[i:i + _ENCODE_BATCH]) for i in range(0, x.shape[0], _ENCODE_BATCH)])
    net.train(was_training)
    return out


def image_representations(model: ECMHModel, image: Tensor) -> Tensor:
    """F = h^x(X; θ), n × L in (-1, 1)."""
    if image.shape[0] == 0:
        return torch.zeros(0, model.config.bits, device=model.device)
    return _apply(model.inet, image)


def text_representations(model: ECMHModel, text: Tensor) -> Tensor:
    """G = h^y(Y; θ), n × L in (-1, 1)."""
    if text.shape[0] == 0:
        return torch.zeros(0, model.config.bits, device=model.device)
    return _apply(model.tnet, text)


def sign(x: Tensor) -> Tensor:
    """sign with sign(0) = +1, as int8 ±1 (a zero would be no bit at all)."""
    return torch.where(x >= 0, 1, -1).to(torch.int8)


def project_modality(model: ECMHModel, rows: np.ndarray[Any, Any], modality: str
                     ) -> np.ndarray[Any, Any]:
    """INet(x) for "image", TNet(y) for "text" (word ids or dense features, as the model's
    config says): float32, n × L; their signs (sign(0) = +1) are the query codes."""
    if modality == "image":
        rep = image_representations(model, image_tensor(rows, model.device))
    elif modality == "text":
        rep = text_representations(model, text_tensor(model.config, rows, model.device))
    else:
        raise ValueError(f"modality must be 'image' or 'text', not {modality!r}")
    return np.asarray(rep.cpu().numpy())


def encode_pairs(model: ECMHModel, image: np.ndarray[Any, Any], text: np.ndarray[Any, Any]
                 ) -> dict[str, np.ndarray[Any, Any]]:
    """The three codes of image–text pairs (±1 int8, n × L; sign(0) = +1): "image" sign(F),
    "text" sign(G) and "pairs" the unified sign(F + G) (Eq. 8), F = INet(image),
    G = TNet(text). The one place pairs are encoded: rounds, the service and the offline
    protocol all call it (the protocol through :func:`encode_pairs_with`)."""
    return encode_pairs_with(model, image, text)[0]


def encode_pairs_with(model: ECMHModel, image: np.ndarray[Any, Any],
                      text: np.ndarray[Any, Any]
                      ) -> tuple[dict[str, np.ndarray[Any, Any]], np.ndarray[Any, Any],
                                 np.ndarray[Any, Any]]:
    """:func:`encode_pairs`'s codes with F and G themselves (float32 host arrays)."""
    if image.shape[0] != text.shape[0]:
        raise ValueError(f"{image.shape[0]} images but {text.shape[0]} texts")
    f = image_representations(model, image_tensor(image, model.device))
    g = text_representations(model, text_tensor(model.config, text, model.device))
    codes = {"pairs": sign(f + g).cpu().numpy(), "image": sign(f).cpu().numpy(),
             "text": sign(g).cpu().numpy()}
    return codes, f.cpu().numpy(), g.cpu().numpy()

