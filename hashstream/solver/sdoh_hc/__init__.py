"""SDOH-HC: the discrete online-hashing round with hash centers, its state and memories."""

from hashstream.solver.sdoh_hc.round import InputError, RoundResult, encode, learn_chunk
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.solver.sdoh_hc.state import SDOHState

__all__ = ["InputError", "RoundResult", "SDOHSettings", "SDOHState", "encode", "learn_chunk"]
