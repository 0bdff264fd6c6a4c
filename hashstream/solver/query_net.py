"""A small network that corrects a linear query encoder: codes = sgn(φ(x)P + g(x)).

g is one hidden ReLU layer on centred, scaled features. Its output layer starts at zero, so an
untrained g leaves sgn(φ(x)P) as it was; each round it takes a fixed number of Adam steps on
the squared residual ‖B − φ(x)P − g(x)‖² of stored items and their codes, plus an L2 penalty.
The ridge P alone cannot reproduce multi-label codes (its fit is linear in φ with the anchors of
the first chunk); the residual adds capacity without giving up what P already fits, and the
steps per round do not depend on the chunk size. The weights are the whole state (the Adam
moments restart every round), so it stays O(1) in the stream length; arrays live on the
backend and are float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hashstream.solver.backend import Backend

QUERY_NET_PREFIX = "query_net_"
QUERY_NET_FIELDS = tuple(f"{QUERY_NET_PREFIX}{k}" for k in
                         ("mean", "scale", "w1", "b1", "w2", "b2"))
_DTYPE = np.float32
# Adam's step size, mini-batch rows and the L2 weight: chosen on a validation split carved from
# the MIRFlickr training stream and the sklearn digits one (bench/query_encoder.py).
LEARNING_RATE = 1e-3
BATCH = 128
WEIGHT_DECAY = 3e-3
_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8


@dataclass(frozen=True)
class QueryNet:
    """g's parameters: input centring ``mean`` (d) and ``scale`` (fixed by the first chunk),
    hidden layer ``w1`` (d × h), ``b1`` (h), output layer ``w2`` (h × r), ``b2`` (r)."""

    mean: Any
    scale: float
    w1: Any
    b1: Any
    w2: Any
    b2: Any

    @property
    def hidden(self) -> int:
        return int(self.w1.shape[1])

    def to_host(self, backend: Backend) -> QueryNet:
        """The same net with every array as a NumPy array."""
        mean, w1, b1, w2, b2 = (backend.to_numpy(a) for a in (self.mean, self.w1, self.b1,
                                                              self.w2, self.b2))
        return QueryNet(mean, self.scale, w1, b1, w2, b2)

    def to_arrays(self) -> dict[str, np.ndarray[Any, Any]]:
        """The ``QUERY_NET_FIELDS`` (host arrays; :meth:`to_host` first on a GPU)."""
        values = (self.mean, np.asarray(self.scale, dtype=np.float64), self.w1, self.b1,
                  self.w2, self.b2)
        return {k: np.asarray(v) for k, v in zip(QUERY_NET_FIELDS, values, strict=True)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray[Any, Any]]) -> QueryNet | None:
        """The net stored in ``arrays``, or None when they hold none (states written before
        the net existed, or by the linear encoder)."""
        if not all(k in arrays for k in QUERY_NET_FIELDS):
            return None
        mean, scale, w1, b1, w2, b2 = (arrays[k] for k in QUERY_NET_FIELDS)
        d, h = w1.shape
        if mean.shape != (d,) or b1.shape != (h,) or w2.shape[0] != h or b2.shape != w2.shape[1:]:
            raise ValueError(f"stored query net has inconsistent shapes: mean {mean.shape}, "
                             f"w1 {w1.shape}, b1 {b1.shape}, w2 {w2.shape}, b2 {b2.shape}")
        return cls(mean, float(scale), w1, b1, w2, b2)


def init_query_net(first_chunk: np.ndarray[Any, Any], bits: int, hidden: int,
                   seed: int) -> QueryNet:
    """g before any step: centring by the chunk's mean, one scale (the root mean variance of
    its features, so a feature constant in the first chunk cannot blow up later inputs), He
    initialised hidden layer, zero output layer (g = 0)."""
    x = np.asarray(first_chunk, dtype=np.float64)
    d = x.shape[1]
    scale = float(np.sqrt(x.var(axis=0).mean()))
    rng = np.random.default_rng([seed, 4099])
    w1 = rng.standard_normal((d, hidden)) * np.sqrt(2.0 / d)
    return QueryNet(x.mean(axis=0).astype(_DTYPE), scale if scale > 0 else 1.0,
                    w1.astype(_DTYPE), np.zeros(hidden, _DTYPE),
                    np.zeros((hidden, bits), _DTYPE), np.zeros(bits, _DTYPE))


def _inputs(net: QueryNet, x: Any, backend: Backend) -> Any:
    xp = backend.xp
    return (xp.asarray(x, dtype=_DTYPE) - xp.asarray(net.mean, dtype=_DTYPE)) / _DTYPE(net.scale)


def query_net_output(net: QueryNet, x: Any, backend: Backend) -> Any:
    """g(x), n × r on the backend (float32)."""
    xp = backend.xp
    w1, b1, w2, b2 = (xp.asarray(a, dtype=_DTYPE) for a in (net.w1, net.b1, net.w2, net.b2))
    h = _inputs(net, x, backend) @ w1
    h += b1
    xp.maximum(h, 0, out=h)
    z = h @ w2
    z += b2
    return z


def train_query_net(net: QueryNet, x: Any, residual: Any, steps: int,
                    rng: np.random.Generator, backend: Backend,
                    row_weights: np.ndarray[Any, Any] | None = None) -> QueryNet:
    """``steps`` Adam steps on mean ‖residual − g(x)‖² / 2 + WEIGHT_DECAY ‖θ‖² / 2 over
    mini-batches of the rows of ``x`` (n × d) and ``residual`` (n × r, the targets minus the
    linear part); each pass over the rows is a fresh seeded permutation, or with
    ``row_weights`` (n, positive) the rows are drawn with probability in proportion to them.
    Pure: a new net.

    The cost is the step's GEMMs plus Adam's passes over the d × h first layer; that layer is
    updated in blocks of rows that stay in cache, each block's gradient written by its own
    product straight before its update (on the GPU, one block)."""
    xp = backend.xp
    n = int(x.shape[0])
    if steps < 1 or n == 0:
        return net
    inputs = _inputs(net, x, backend)
    target = xp.asarray(residual, dtype=_DTYPE)
    params = [xp.array(a, dtype=_DTYPE) for a in (net.w1, net.b1, net.w2, net.b2)]
    first = [xp.zeros_like(p) for p in params]
    second = [xp.zeros_like(p) for p in params]
    small_grads = [xp.empty_like(p) for p in params[1:]]
    small_scratch = [xp.empty_like(p) for p in params[1:]]
    batch = min(BATCH, n)
    if row_weights is not None:  # rows drawn in proportion to their weights
        order = rng.choice(n, size=steps * batch, p=row_weights / row_weights.sum())
    else:
        passes = -(-steps * batch // n)
        order = np.concatenate([rng.permutation(n) for _ in range(passes)])[:steps * batch]
    order_dev = backend.asarray(order.reshape(steps, batch))
    d, h = (int(k) for k in params[0].shape)
    rows = d if backend.name == "cupy" else max(1, _BLOCK_ELEMENTS // h)
    grad_block = xp.empty((min(rows, d), h), dtype=_DTYPE)
    scratch_block = xp.empty_like(grad_block)
    adam = _ScaledAdam()
    for t in range(1, steps + 1):
        adam.advance(t)
        picked = order_dev[t - 1]
        xb, yb = inputs[picked], target[picked]
        w1, b1, w2, b2 = params
        hidden = xb @ w1
        hidden += b1
        xp.maximum(hidden, 0, out=hidden)
        err = hidden @ w2
        err += b2
        err -= yb
        err *= _DTYPE(1.0 / batch)
        grad_hidden = err @ w2.T
        grad_hidden *= hidden > 0
        xp.sum(grad_hidden, axis=0, out=small_grads[0])
        xp.matmul(hidden.T, err, out=small_grads[1])
        xp.sum(err, axis=0, out=small_grads[2])
        for p, g, m1, m2, tmp in zip(params[1:], small_grads, first[1:], second[1:],
                                     small_scratch, strict=True):
            adam.update(xp, p, g, m1, m2, tmp)
        for lo in range(0, d, rows):
            hi = min(lo + rows, d)
            g, tmp = grad_block[:hi - lo], scratch_block[:hi - lo]
            xp.matmul(xb[:, lo:hi].T, grad_hidden, out=g)
            adam.update(xp, w1[lo:hi], g, first[0][lo:hi], second[0][lo:hi], tmp)
    w1, b1, w2, b2 = params
    return QueryNet(net.mean, net.scale, w1, b1, w2, b2)


# Elements of the first layer updated per block on the CPU: five float32 arrays of this size
# (weights, two moments, gradient, scratch) fit in a core's L2, so Adam's passes stay there.
_BLOCK_ELEMENTS = 1 << 17


class _ScaledAdam:
    """Adam with L2 weight decay in twelve in-place passes per array, no temporaries.

    Plain Adam: g ← g + λp; m₁ ← β₁m₁ + (1−β₁)g; m₂ ← β₂m₂ + (1−β₂)g²;
    p ← p − s_t m₁/(√m₂ + ε) with s_t = lr √(1−β₂ᵗ)/(1−β₁ᵗ). The moments are kept as
    a = m₁/(1−β₁) and v = m₂/(1−β₂), so a ← β₁a + g and v ← β₂v + g² need no scaling, and
    p ← p − a/((√v + ε′)/c_t) with ε′ = ε/√(1−β₂), c_t = s_t (1−β₁)/√(1−β₂): the same numbers
    as plain Adam up to rounding."""

    def __init__(self) -> None:
        self.scale = self.eps = 1.0

    def advance(self, t: int) -> None:
        """Set the step-t scalars (t counts from 1; the moments start at zero)."""
        step = LEARNING_RATE * (1 - _BETA2 ** t) ** 0.5 / (1 - _BETA1 ** t)
        self.scale = step * (1 - _BETA1) / (1 - _BETA2) ** 0.5
        self.eps = _EPS / (1 - _BETA2) ** 0.5

    def update(self, xp: Any, p: Any, g: Any, a: Any, v: Any, tmp: Any) -> None:
        """One step of ``p`` given its gradient ``g`` (overwritten) and moments ``a``, ``v``."""
        xp.multiply(p, _DTYPE(WEIGHT_DECAY), out=tmp)
        g += tmp
        a *= _DTYPE(_BETA1)
        a += g
        g *= g
        v *= _DTYPE(_BETA2)
        v += g
        xp.sqrt(v, out=tmp)
        tmp += _DTYPE(self.eps)
        tmp *= _DTYPE(1.0 / self.scale)
        xp.divide(a, tmp, out=tmp)
        p -= tmp
