"""The array backend: NumPy or CuPy, chosen once, so solver math is written once against ``xp``.

This is the only module that imports CuPy. Everything else receives a :class:`Backend` and uses
``backend.xp``; transfers between host and device happen at the edges (``asarray``/``to_numpy``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np

BackendName = Literal["auto", "numpy", "cupy"]


class BackendUnavailable(RuntimeError):
    """The requested backend cannot be used on this machine (CuPy missing or no GPU)."""


@dataclass(frozen=True)
class Backend:
    """An array module plus the float dtype the solver computes in."""

    name: Literal["numpy", "cupy"]
    xp: ModuleType
    dtype: Any

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """Move ``a`` onto this backend's device (a no-op for arrays already there)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray[Any, Any]:
        """Bring ``a`` back to host memory as a NumPy array."""
        if self.name == "cupy":
            return self.xp.asnumpy(a)  # type: ignore[no-any-return]
        return np.asarray(a)

    def sparse(self, a: Any) -> Any:
        """A host SciPy CSR matrix on this backend, in its dtype: the SciPy matrix itself on
        NumPy, a ``cupyx.scipy.sparse.csr_matrix`` on CuPy (32-bit indices)."""
        if self.name == "cupy":
            csp = importlib.import_module("cupyx.scipy.sparse")
            return csp.csr_matrix((self.xp.asarray(a.data, dtype=self.dtype),
                                   self.xp.asarray(a.indices, dtype=np.int32),
                                   self.xp.asarray(a.indptr, dtype=np.int32)), shape=a.shape)
        return a if a.dtype == self.dtype else a.astype(self.dtype)

    def cho_solve(self, a: Any, b: Any) -> Any:
        """Solve ``a x = b`` for symmetric positive-definite ``a`` by a Cholesky factorisation."""
        if self.name == "cupy":
            solve_triangular = importlib.import_module("cupyx.scipy.linalg").solve_triangular
            low = self.xp.linalg.cholesky(a)
            y = solve_triangular(low, b, lower=True)
            return solve_triangular(low.T, y, lower=False)
        # NumPy's own LAPACK, not SciPy's: SciPy bundles a second OpenBLAS whose idle threads
        # spin against NumPy's on a small machine (measured: the P step took 4× longer).
        low = np.linalg.cholesky(a)
        return _triangular_solve_pair(low, b)

    def synchronize(self) -> None:
        """Wait for queued device work (for honest timings); a no-op on NumPy."""
        if self.name == "cupy":
            self.xp.cuda.Stream.null.synchronize()


def _triangular_solve_pair(low: Any, b: Any) -> Any:
    """x = L⁻ᵀ L⁻¹ b for lower-triangular L, by blocked forward and back substitution
    (matrix products on NumPy's BLAS; m³/3 work like the factorisation itself)."""
    m = low.shape[0]
    block = 128
    y = np.array(b, dtype=np.result_type(low, b), copy=True)
    for i in range(0, m, block):  # forward: L y = b
        j = min(i + block, m)
        if i:
            y[i:j] -= low[i:j, :i] @ y[:i]
        y[i:j] = np.linalg.solve(low[i:j, i:j], y[i:j])
    for i in range(((m - 1) // block) * block, -1, -block):  # back: Lᵀ x = y
        j = min(i + block, m)
        if j < m:
            y[i:j] -= low[j:, i:j].T @ y[j:]
        y[i:j] = np.linalg.solve(low[i:j, i:j].T, y[i:j])
    return y


def _cupy_module() -> ModuleType | None:
    try:
        cupy = importlib.import_module("cupy")
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        return cupy
    except Exception:  # noqa: BLE001 - any import or driver failure means "no usable GPU"
        return None


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    return _cupy_module() is not None


def get_backend(name: BackendName = "auto", dtype: str | None = None) -> Backend:
    """Choose the array backend once: ``auto`` takes CuPy when a GPU is usable, else NumPy.

    ``dtype`` defaults to float32 on the GPU and float64 on the CPU.
    """
    if name not in ("auto", "numpy", "cupy"):
        raise ValueError(f"backend must be 'auto', 'numpy' or 'cupy', not {name!r}")
    if name in ("auto", "cupy"):
        cupy = _cupy_module()
        if cupy is not None:
            return Backend("cupy", cupy, np.dtype(dtype or "float32"))
        if name == "cupy":
            raise BackendUnavailable(
                "backend 'cupy' requested but CuPy or a CUDA device is missing")
    return Backend("numpy", np, np.dtype(dtype or "float64"))
