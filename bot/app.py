"""The FastAPI application, built by :func:`create_app` from settings."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from bot.auth import LoginThrottle, session_secret
from bot.db import init_db, make_engine, make_sessionmaker, read_sessionmaker
from bot.event_hub import connect_from_environ
from bot.events import Broker
from bot.events import install as install_events
from bot.limits import BodyLimit
from bot.origins import OriginGuard
from bot.pipeline import IndexHolder, Pipeline, embedder_source
from bot.reindex import Reindexer
from bot.routes import (
    admin_articles,
    admin_gaps,
    admin_import,
    admin_metrics,
    admin_try,
    agent,
    api_articles,
    chat,
    customers,
    health,
    helpcenter,
    widget,
)
from bot.routes.pages import STATIC_DIR
from bot.settings import Settings
from bot.webhooks import start_worker, stop_worker
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
            settings.dense_options(),
        )
        holder.refresh()
        state.pipeline = Pipeline.from_settings(settings, holder)
        state.reindexer = Reindexer(state.sessionmaker, holder, settings)
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
        slots = settings.database_slots()
        engine = make_engine(settings.database_url, pool_size=slots)
        init_db(engine)
        app.state.settings = settings
        # requests inside a database session at once (see bot.deps.get_session)
        app.state.db_slots = asyncio.Semaphore(slots)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.read_sessionmaker = read_sessionmaker(engine)
        app.state.broker = Broker()
        hub_link = connect_from_environ(app.state.broker)  # several workers: share live events
        app.state.login_throttle = LoginThrottle()
        install_events(app.state.sessionmaker, app.state.broker)
        app.state.webhooks = start_worker(app.state.sessionmaker, settings)
        app.state.pipeline = None
        app.state.reindexer = None
        app.state.load_error = None
        app.state.loaded = threading.Event()
        threading.Thread(target=_load, args=(app, settings, embedder), daemon=True).start()
        if hub_link is not None:
            # one of several workers: take no connection before the model, the index and the
            # link to the other workers are ready (the ready workers take them meanwhile), so a
            # /health that answers ok is never followed by a 503 from a worker still loading
            await asyncio.to_thread(app.state.loaded.wait)
            await asyncio.to_thread(hub_link.connected.wait, 10)
        yield
        if app.state.pipeline is not None:
            app.state.pipeline.holder.stop()
        if app.state.reindexer is not None:
            app.state.reindexer.stop()
        stop_worker(app.state.webhooks)
        if hub_link is not None:
            hub_link.close()
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
    app.include_router(customers.router)
    app.include_router(widget.router)
    app.include_router(helpcenter.router)
    app.include_router(agent.router)
    app.include_router(admin_articles.router)
    app.include_router(api_articles.router)
    app.include_router(admin_import.router)
    app.include_router(admin_try.router)
    app.include_router(admin_metrics.router)
    app.include_router(admin_gaps.router)
    app.mount("/widget/static", StaticFiles(directory=widget.STATIC_DIR), name="widget-static")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(settings.secret_key, settings.secret_key_file),
        session_cookie="supportbot_session",
        max_age=settings.session_max_age_seconds,
        same_site="lax",
        https_only=settings.https_cookies,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "X-Conversation-Token", "X-Customer-Token"],
    )
    app.add_middleware(
        OriginGuard, allowed=settings.allowed_origins, public_url=settings.public_url
    )
    app.add_middleware(BodyLimit)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # ASCII-escaped, so an echoed input that is not valid Unicode (a lone surrogate from
        # JSON) cannot turn the 422 into a 500 while the response is encoded
        body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True)
        return Response(body, status_code=422, media_type="application/json")

    @app.exception_handler(agent.SignInRequired)
    async def _sign_in(request: Request, exc: agent.SignInRequired) -> Response:
        if exc.wants_json:
            return JSONResponse({"detail": "sign in first"}, status_code=401)
        return RedirectResponse(f"/agent/login?next={quote(exc.next_url)}", status_code=303)

    @app.exception_handler(agent.AdminRequired)
    async def _admin_only(request: Request, exc: agent.AdminRequired) -> Response:
        return JSONResponse({"detail": "only admins (support leads) may do this"}, status_code=403)

    @app.exception_handler(agent.CsrfFailed)
    async def _csrf(request: Request, exc: agent.CsrfFailed) -> Response:
        detail = "the form has expired or did not come from this site; reload the page and retry"
        return JSONResponse({"detail": detail}, status_code=403)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; it has been logged"}, status_code=500)

    return app
