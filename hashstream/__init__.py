"""hashstream: a streaming online-hashing retrieval service (SDOH-HC, ECMH) on Redis."""

__version__ = "0.1.0"
