"""Request and response bodies of the HTTP API (pydantic; they make the OpenAPI docs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hashstream.service.registry import (
    AnchorGrowth,
    ExemplarKeep,
    ExemplarPolicy,
    FeatureMapKind,
    OldSimilarity,
    OldWeight,
    QueryEncoder,
    TermScaling,
)
from hashstream.service.search_options import Ties

Width = Annotated[int, Field(ge=1, le=16_384)]
"""A hidden-layer width of a cross-modal network."""


class CreateIndex(BaseModel):
    """An index: its feature dimension, code length and (optionally) any solver setting."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["images"])
    dim: int = Field(ge=1, le=1_000_000, description="feature dimension d")
    bits: int = Field(default=32, ge=8, le=1024, description="code length r")
    theta: float | None = Field(default=None, ge=0)
    eta: float | None = Field(default=None, ge=0)
    beta: float | None = Field(default=None, ge=0)
    lam: float | None = Field(default=None, gt=0)
    alpha: float | None = Field(default=None, ge=0, description="weight of the old-data term")
    gamma: float | None = Field(default=None, ge=0, description="weight of the exemplar term")
    delta: float | None = Field(default=None, ge=0, description="weight of the "
                                "self-distillation term (default 0.1 under normalized term "
                                "scaling; θ under paper scaling)")
    term_scaling: TermScaling | None = Field(
        default=None, description="normalized (default: each weight pulls alike at any chunk "
        "size, code length and class count) or paper (the raw sums of Eq. 7)")
    n1: int | None = Field(default=None, ge=0, le=100_000)
    n2: int | None = Field(default=None, ge=0, le=100_000)
    iterations: int | None = Field(default=None, ge=1, le=50)
    sweeps: int | None = Field(default=None, ge=1, le=10)
    feature_map: FeatureMapKind | None = None
    n_anchors: int | None = Field(default=None, ge=1, le=20_000)
    anchor_growth: AnchorGrowth | None = Field(
        default=None, description="rbf: novelty (default; anchors are added, up to n_anchors, "
        "from later chunks that reach beyond the first chunk's anchors) or off (all anchors "
        "from the first chunk)")
    first_anchor_share: float | None = Field(
        default=None, gt=0, le=1, description="anchor growth: share of n_anchors the first "
        "chunk gives")
    anchor_coverage: float | None = Field(
        default=None, gt=0, lt=1, description="anchor growth: a chunk gets anchors until at "
        "most 1 − this share of it lies beyond the novelty radius")
    exemplar_policy: ExemplarPolicy | None = None
    exemplar_keep: ExemplarKeep | None = Field(
        default=None, description="which n1 exemplars stay each round: class_balanced "
        "(default; round-robin over the memory's classes, so old classes keep their share in "
        "a class-incremental stream) or random (the paper's)")
    condensed_per_class: int | None = Field(default=None, ge=0, le=100_000)
    condensed_steps: int | None = Field(default=None, ge=0, le=10_000)
    old_weight: OldWeight | None = None
    old_similarity: OldSimilarity | None = None
    use_old_term: bool | None = None
    use_exemplar_term: bool | None = None
    use_distillation: bool | None = None
    use_hadamard_term: bool | None = None
    use_center_term: bool | None = None
    query_encoder: QueryEncoder | None = Field(
        default=None, description="how queries are encoded: linear (default; sgn(φ(q)P)) or "
        "residual_net (sgn(φ(q)P) corrected by a small network trained each round on the "
        "stored codes: better on random-order streams, worse on class-incremental ones)")
    query_hidden: int | None = Field(default=None, ge=1, le=4096,
                                     description="residual_net: hidden units of the network")
    query_steps: int | None = Field(default=None, ge=0, le=10_000,
                                    description="residual_net: training steps per round")
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    max_classes: int = Field(default=5_000, ge=1, le=100_000,
                             description="most distinct class labels the index accepts")
    partitions: int = Field(default=1, ge=1, le=64, description="code-store partitions: each "
                            "on its own Redis Cluster hash slot, so a large index spreads over "
                            "shards; searches scatter over them and merge the exact top-k "
                            "(ties by id). The model stays one per index")
    queue_dtype: Literal["float32", "float16"] = Field(
        default="float32", description="dtype of features waiting in the ingest queue: "
        "float16 halves the bytes queued and persisted per item (rounds still compute in the "
        "solver's dtype; features beyond ±65504 are refused with 422)")
    method: Literal["sdoh-hc", "ecmh", "lsh"] | None = Field(
        default=None, description="hashing method: sdoh-hc (default), ecmh (image–text pairs, "
        "as kind 'cross-modal') or lsh (random projections, the baseline)")
    # cross-modal (ECMH) indexes: dim is the image feature dimension
    kind: Literal["sdoh-hc", "cross-modal"] = "sdoh-hc"
    loss: Literal["ecmh", "dhd", "idcwh"] | None = Field(
        default=None, description="cross-modal: the objective of the hash networks (ECMH's "
        "own, Deep Hash Distillation's proxies or IDCWH's class centers)")
    text_kind: Literal["dense", "tokens"] = "dense"
    text_dim: int | None = Field(default=None, ge=1, le=1_000_000,
                                 description="dense text feature dimension (cross-modal)")
    image_hidden: list[Width] | None = Field(
        default=None, max_length=8, description="cross-modal: hidden-layer widths of INet; "
        "[] makes it linear (one Linear layer and tanh)")
    text_hidden: list[Width] | None = Field(
        default=None, max_length=8, description="cross-modal: hidden-layer widths of TNet's "
        "head; [] makes it linear")
    embed_dim: int | None = Field(default=None, ge=1, le=4096)
    epochs: int | None = Field(default=None, ge=1, le=10_000)
    extend_epochs: int | None = Field(default=None, ge=1, le=10_000)
    distill_weight: float | None = Field(
        default=None, ge=0, le=1e6, description="cross-modal: weight of the self-taught "
        "distillation L_d (× its entry mean) when a round extends the model to new classes "
        "(default per loss: ecmh 300, dhd and idcwh 10)")
    freeze_first_layer: bool | None = Field(
        default=None, description="cross-modal: keep the first hidden layer of both nets "
        "fixed when a round extends the model (default false)")
    center_weight: float | None = Field(
        default=None, ge=0, le=1e6, description="cross-modal: weight of the term that pulls "
        "new classes towards centers placed away from the old classes' codes when a round "
        "extends the model (default 0: off, as the paper)")

    _CROSS = ("text_kind", "text_dim", "image_hidden", "text_hidden", "embed_dim", "epochs",
              "extend_epochs", "loss", "distill_weight", "freeze_first_layer", "center_weight")

    def method_name(self) -> str | None:
        """The method asked for: ``method``, or "ecmh" for ``kind='cross-modal'``."""
        return self.method or ("ecmh" if self.kind == "cross-modal" else None)

    def solver_settings(self) -> dict[str, Any]:
        skip = {"name", "dim", "kind", "method", "max_classes", "partitions", "queue_dtype",
                *self._CROSS}
        return {k: v for k, v in self.model_dump(exclude=skip).items() if v is not None}

    def cross_modal_settings(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self._CROSS if getattr(self, k) is not None}
        if self.seed is not None:
            out["seed"] = self.seed
        return out


class IndexInfo(BaseModel):
    name: str
    kind: str
    method: str
    dim: int
    bits: int
    settings: dict[str, Any]
    model_version: int
    max_classes: int
    partitions: int
    queue_dtype: str = "float32"
    queue_depth: int
    dead_letters: int = Field(description="chunks in the dead-letter stream")
    n_items: int
    n_classes: int


class IngestAccepted(BaseModel):
    chunk_id: str
    index: str
    items: int
    role: Literal["train", "query"]
    id_range: list[int] | None = Field(default=None,
                                       description="[first, stop) of service-assigned ids")


class ItemInfo(BaseModel):
    """One stored item."""

    index: str
    id: int
    labels: list[int | str] = Field(description="its class labels, as ingested")
    code: str = Field(description="its packed code in hex (numpy.packbits order: the first "
                      "bit is the high bit of the first byte)")
    codes: dict[str, str] | None = Field(
        default=None, description="cross-modal: the code of each target (pairs, image, text)")
    model_version: int = Field(description="the model version that made its code")
    round: int = Field(description="the round that committed it")
    version: int = Field(description="the index version this answer was read from")


class DeleteItems(BaseModel):
    """Ids of stored items to delete."""

    model_config = ConfigDict(extra="forbid")

    ids: list[int] = Field(min_length=1, max_length=100_000, examples=[[3, 17, 42]])


class DeletedItems(BaseModel):
    """Which ids this request deleted, and which were unknown (never stored, not committed
    yet, or deleted already)."""

    index: str
    deleted: list[int]
    unknown: list[int]
    version: int = Field(description="the index version the delete applied to")


MIN_VERSION = (
    "read-your-writes: search a version at least this one (e.g. the model_version a round "
    "or an earlier search reported); waits up to HASHSTREAM_REPLICA_WAIT_MS for this "
    "process's replica, then 503 (field min_version, Retry-After). 409 when it is ahead of the "
    "index's committed version. Without it, a search answers at once from the version held "
    "(a newer commit is loaded in the background).")


MAX_DISTANCE = ("keep only hits within this Hamming distance of the query (still at most k: "
                "the k nearest, cut at the radius)")
LABELS_ANY = ("only items with at least one of these labels (the index's label type: ints or "
              "strings)")
LABELS_ALL = "only items with all of these labels (the index's label type: ints or strings)"
TIES = ("the order of the items at one Hamming distance: insertion (the earlier item first) or "
        "projection (by their code's inner product with the query's real-valued projection, "
        "whose signs are its code; then insertion). Query vectors only; same distances, "
        "better order within them, at the cost of scoring every item at the k-th distance")


class SearchFilter(BaseModel):
    """Which stored items a search may return, by their labels (both conditions: both hold)."""

    model_config = ConfigDict(extra="forbid")

    labels_any: list[int | str] | None = Field(default=None, min_length=1, max_length=1000,
                                               description=LABELS_ANY, examples=[[3, 5]])
    labels_all: list[int | str] | None = Field(default=None, min_length=1, max_length=1000,
                                               description=LABELS_ALL, examples=[[3, 7]])


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: list[list[float]] | None = Field(default=None, min_length=1,
                                               description="query vectors, q × d")
    image: list[list[float]] | None = Field(default=None, min_length=1,
                                            description="cross-modal: image query vectors")
    text: list[list[float]] | None = Field(default=None, min_length=1,
                                           description="cross-modal: dense text queries")
    tokens: list[list[int]] | None = Field(default=None, min_length=1,
                                           description="cross-modal: word-id queries")
    target: Literal["pairs", "image", "text"] = Field(
        default="pairs", description="cross-modal: rank the pairs' unified codes, or the "
        "codes of their image or text side (search within a modality)")
    k: int = Field(default=10, description="neighbours per query, 1..HASHSTREAM_MAX_K")
    min_version: int | None = Field(default=None, ge=0, description=MIN_VERSION)
    filter: SearchFilter | None = Field(default=None, description="label filter")
    max_distance: int | None = Field(default=None, ge=0, description=MAX_DISTANCE)
    ties: Ties = Field(default="insertion", description=TIES)


class Hit(BaseModel):
    id: int
    distance: int
    labels: list[int | str] = Field(description="the item's class labels, as ingested")
    model_version: int = Field(description="the model version that made the item's code (the "
                               "round that learned it; for ECMH the hash networks' version)")


class SearchResponse(BaseModel):
    index: str
    model_version: int
    results: list[list[Hit]]
    partitions: list[int] | None = Field(
        default=None, description="partitioned indexes: the partitions this answer covers "
        "(an API process may serve a subset, HASHSTREAM_SERVE_PARTITIONS)")


class Readiness(BaseModel):
    """What /readyz answers, ready (200) or not (503)."""

    status: Literal["ready", "no worker", "unavailable"]
    redis: bool
    workers: int | None = Field(default=None, description="live workers")
    worker_kernels: dict[str, str] | None = Field(
        default=None, description="each worker's Hamming kernel")
    hamming_kernel: str | None = Field(default=None, description="this process's kernel")
    detail: str | None = Field(default=None, description="why Redis did not answer")


class Problem(BaseModel):
    """RFC 9457 problem details: every error the API answers has this body."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    field: str | None = None
    limit: str | None = Field(None, description="429: the setting(s) whose limit the index's "
                              "backlog passed")
    backlog_items: int | None = Field(None, description="429: items waiting for rounds")
    backlog_seconds: float | None = Field(None, description="429: the estimated seconds of "
                                          "work waiting (null before a round gave a rate)")
    idempotency_key: str | None = Field(
        None, description="503 of an ingest whose outcome is not known: the Idempotency-Key "
        "(the client's, or one the service made) to resend the same request under; it is then "
        "queued exactly once")
