"""Exact Hamming search over packed binary codes: compiled kernels, multi-index hashing and a
NumPy scan (no Redis, no HTTP)."""
