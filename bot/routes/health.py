"""Liveness and readiness."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/health")
def health(request: Request) -> JSONResponse:
    """200 once the model and the index are loaded, 503 before (or if loading failed)."""
    state = request.app.state
    pipeline = getattr(state, "pipeline", None)
    index = pipeline.holder.index if pipeline else None
    if index is None:
        detail = (
            (pipeline.holder.error if pipeline else None)
            or getattr(state, "load_error", None)
            or "loading the model and the index"
        )
        return JSONResponse({"status": "starting", "detail": detail}, status_code=503)
    return JSONResponse(
        {
            "status": "ok",
            "index_version": index.manifest.version,
            "articles": index.manifest.articles,
            "passages": index.manifest.passages,
            "model": index.manifest.model,
            "process": os.getpid(),  # which server process answered (see SUPPORTBOT_WORKERS)
        }
    )
