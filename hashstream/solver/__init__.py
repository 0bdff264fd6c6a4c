"""The math of hashstream: pure, stateless between calls, no Redis and no HTTP.

Everything here is written once against an array module ``xp`` (NumPy or CuPy) chosen by
:mod:`hashstream.solver.backend`.
"""
