"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from hashstream.api.deps import IndexesDep, require_api_key
from hashstream.api.problems import responses
from hashstream.api.schemas import Readiness
from hashstream.service.replicas import hamming_kernel

router = APIRouter(tags=["health"])
# Only liveness is open; readiness reveals the deployment's state and needs the key.
ready_router = APIRouter(tags=["health"], dependencies=[Depends(require_api_key)],
                         responses=responses(401))


@router.get("/healthz", summary="The process is alive, and which Hamming kernel it runs")
def healthz() -> dict[str, str]:
    # The compiled kernel's instruction set (avx512, avx2, popcnt, scalar), or "numpy" when the
    # C extension was not built (the pure-NumPy fallback).
    return {"status": "ok", "hamming_kernel": hamming_kernel()}


@ready_router.get("/readyz", summary="Redis answers and at least one worker is alive",
                  responses={200: {"model": Readiness},
                             503: {"model": Readiness, "description": "Not ready: Redis does "
                                   "not answer, or no worker is alive (not problem+json)"}})
def readyz(indexes: IndexesDep) -> JSONResponse:
    try:
        state = indexes.readiness()
    except Exception as exc:  # noqa: BLE001 - any Redis failure means not ready
        return JSONResponse({"status": "unavailable", "redis": False, "detail": str(exc)},
                            status_code=503)
    ready = state["workers"] > 0
    return JSONResponse({"status": "ready" if ready else "no worker", "redis": True, **state,
                         "hamming_kernel": hamming_kernel()},
                        status_code=200 if ready else 503)
