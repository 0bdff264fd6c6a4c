"""Offline evaluation protocols (online hashing, ECMH): they use the solver only."""
