"""The FastAPI application, built by :func:`create_app` from settings."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from bot.db import init_db, make_engine, make_sessionmaker
from bot.pipeline import IndexHolder, Pipeline, embedder_source
from bot.routes import chat, health
from bot.settings import Settings
from indexer.embedder import Embedder

log = logging.getLogger(__name__)


def _load(app: FastAPI, settings: Settings, embedder: Embedder | None) -> None:
    """Load the model and the index (in a thread, so /health can answer 503 meanwhile)."""
    state = app.state
    try:
        holder = IndexHolder(
            settings.index_dir,
            settings.index_check_seconds,
            embedder_source(settings, override=embedder),
        )
        holder.refresh()
        state.pipeline = Pipeline.from_settings(settings, holder)
        holder.start_watching()
    except Exception as exc:
        log.exception("could not load the model or the index")
        state.load_error = f"{exc.__class__.__name__}: {exc}"
    finally:
        state.loaded.set()


def create_app(settings: Settings | None = None, embedder: Embedder | None = None) -> FastAPI:
    """Build the app. ``embedder`` overrides the one the settings name (tests pass a fake)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        init_db(engine)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.pipeline = None
        app.state.load_error = None
        app.state.loaded = threading.Event()
        threading.Thread(target=_load, args=(app, settings, embedder), daemon=True).start()
        yield
        if app.state.pipeline is not None:
            app.state.pipeline.holder.stop()
        engine.dispose()

    app = FastAPI(
        title="supportbot",
        version="0.1.0",
        description="Answers customer questions from your help center, with citations, "
        "and hands over to a person when it is not sure.",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    app.include_router(chat.router)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # ASCII-escaped, so an echoed input that is not valid Unicode (a lone surrogate from
        # JSON) cannot turn the 422 into a 500 while the response is encoded
        body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True)
        return Response(body, status_code=422, media_type="application/json")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; it has been logged"}, status_code=500)

    return app
