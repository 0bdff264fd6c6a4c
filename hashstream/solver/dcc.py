"""Discrete cyclic coordinate descent (DCC), the B- and Y-steps of SDOH-HC.

Solves min tr(B A Bᵀ) − 2 tr(BᵀQ) over B ∈ {−1, +1}^{n×r} one bit column at a time:
B[:, k] = sgn(Q[:, k] − B[:, ≠k] A[≠k, k]). Each update is the exact minimiser given the other
columns, so the objective never rises. Rows are independent given A, which the GPU path uses:
one thread per row sweeps its r bits (a Python loop over columns would launch ~4r kernels).
"""

from __future__ import annotations

from typing import Any

from hashstream.solver.backend import Backend

_KERNEL_SOURCE = r"""
extern "C" __global__ void dcc_rows(T* b, const T* q, const T* a, int n, int r, int sweeps) {
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    if (i >= n) return;
    T* row = b + (long long)i * r;
    const T* qrow = q + (long long)i * r;
    for (int s = 0; s < sweeps; ++s) {
        for (int k = 0; k < r; ++k) {
            T acc = qrow[k] + row[k] * a[k * r + k];
            for (int j = 0; j < r; ++j) acc -= row[j] * a[j * r + k];
            row[k] = acc >= 0 ? (T)1 : (T)-1;
        }
    }
}
"""

_kernels: dict[str, Any] = {}


def _gpu_kernel(xp: Any, dtype: Any) -> Any:
    name = "double" if dtype == "float64" else "float"
    if name not in _kernels:
        _kernels[name] = xp.RawKernel(f"typedef {name} T;\n" + _KERNEL_SOURCE, "dcc_rows")
    return _kernels[name]


def dcc(b: Any, q: Any, a: Any, sweeps: int, backend: Backend) -> Any:
    """Return B after ``sweeps`` DCC sweeps, starting from ``b`` (not mutated)."""
    xp = backend.xp
    b = b.copy()
    if backend.name == "cupy":
        n, r = b.shape
        b = xp.ascontiguousarray(b)
        kernel = _gpu_kernel(xp, str(b.dtype))
        threads = 128
        kernel(((n + threads - 1) // threads,), (threads,),
               (b, xp.ascontiguousarray(q, dtype=b.dtype), xp.ascontiguousarray(a, dtype=b.dtype),
                xp.int32(n), xp.int32(r), xp.int32(sweeps)))
        return b
    for _ in range(sweeps):
        for k in range(b.shape[1]):
            col = q[:, k] - b @ a[:, k] + b[:, k] * a[k, k]
            b[:, k] = xp.where(col >= 0, 1.0, -1.0)
    return b
