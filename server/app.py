"""The FastAPI application: API under `/api/v1` and `/healthz`.

`create_app` is the only way to build it, so tests, the benchmark and `beliefscope serve` run
the same app: a store (opened here from settings unless given), the access policy
(`beliefscope.access`), a frame service, the ingest job runner and the webhook worker, behind
the `Host` check and security headers (`server.guards`) and the body limit. The dashboard is
mounted beside it by the command wiring (`beliefscope.cli.serve`): the server does not know it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Request

from beliefscope.access import Authorizer
from beliefscope.config import Settings, get_settings
from beliefscope.errors import NotFoundError
from beliefscope.review.service import ReviewService
from beliefscope.store.engine import Store, open_store
from server import errors
from server.bodylimit import BodyLimit
from server.deps import ServerContext, known_query, scope
from server.frame_service import FrameService
from server.guards import ContentPolicy, Guards
from server.jobs import IngestJobs
from server.routes import (
    access,
    activity,
    checkpoints,
    episodes,
    exports,
    flags,
    jobs,
    rules,
    runs,
    scores,
    tokens,
    traces,
    webhooks,
)
from server.schemas import ErrorPublic
from server.targets import TargetPolicy
from server.webhooks import WebhookWorker

log = logging.getLogger("beliefscope.server")

API_PREFIX = "/api/v1"
MAX_BODY_BYTES = 1 << 20
"""Request bodies over 1 MiB are refused (413): no legitimate request comes close."""

_ERRORS = {code: {"model": ErrorPublic} for code in (400, 401, 403, 404, 409, 413, 422, 429, 503)}


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    webhook_interval_s: float = 2.0,
) -> FastAPI:
    """The app for `settings` (default: `get_settings()`); `store` overrides `settings.store`.
    The store is closed on shutdown only when this function opened it."""
    settings = settings or get_settings()
    targets = TargetPolicy(settings.webhook_allow)  # a bad entry fails before the store opens
    owns_store = store is None
    store = store or open_store(settings.store or None, create=True)  # a first serve creates it
    ctx = ServerContext(
        settings=settings,
        store=store,
        reviews=ReviewService(store),
        access=Authorizer(store, settings),
        frames=FrameService(store, settings),
        jobs=IngestJobs(store, settings),
        webhooks=WebhookWorker(
            store, base_url=public_url(settings), targets=targets, interval_s=webhook_interval_s
        ),
        content_policy=ContentPolicy(),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ctx.webhooks.start()
        try:
            yield
        finally:
            ctx.webhooks.stop()
            ctx.jobs.shutdown()
            if owns_store:
                store.close()

    app = FastAPI(
        title="Beliefscope",
        version="1",
        summary="Belief-state forensics for RSSM world models",
        lifespan=lifespan,
        responses=_ERRORS,  # type: ignore[arg-type]
        dependencies=[Depends(known_query)],  # unknown query parameters: 422, on every route
    )
    app.state.ctx = ctx
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(Guards, hosts=ctx.access.hosts, policy=ctx.content_policy)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        """Liveness plus a round trip to the store (503 when it cannot be reached)."""
        store.revision()
        return {"status": "ok", "store": store.backend}

    api = APIRouter(prefix=API_PREFIX, dependencies=[scope("read")])
    for module in (
        runs,
        checkpoints,
        episodes,
        traces,
        flags,
        rules,
        scores,
        jobs,
        exports,
        webhooks,
        tokens,
        activity,
    ):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(access.router, prefix=API_PREFIX)  # login works without being logged in

    @app.api_route(
        API_PREFIX + "/{rest:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
    def unknown_api_path(request: Request) -> None:
        """Unknown API paths answer 404 JSON (the dashboard's catch-all would answer HTML)."""
        raise NotFoundError(f"no API endpoint {request.url.path}")

    return app


def public_url(settings: Settings) -> str:
    """The base URL links in webhooks point to."""
    host = "localhost" if settings.host in ("0.0.0.0", "::") else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}"
