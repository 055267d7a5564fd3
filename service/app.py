"""Builds the FastAPI application from explicit settings: `create_app(settings)`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from rq import Queue
from rq.serializers import JSONSerializer
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from nst_shared.jobs import JobStore
from nst_shared.logs import configure_logging
from nst_shared.redis_connection import connect, connect_async
from nst_shared.settings import Settings, get_settings
from nst_shared.storage import open_storage
from nst_shared.sweeper import Sweeper
from nst_shared.sweeps import SweepStore
from service import web
from service.auth import KeyRing
from service.body_limit import BodySizeLimit
from service.errors import install_error_handlers
from service.guard import AccessGuard
from service.headers import SecurityHeaders
from service.holds import HoldLimiter
from service.job_reads import JobReader
from service.metrics_registry import build_registry
from service.openapi import install_openapi
from service.proxies import UntrustedForwardWarning
from service.ratelimit import RateLimiter
from service.request_ids import RequestIds
from service.routes import health, jobs, metrics, sweeps

log = logging.getLogger("nst.api")

DOCS_URL, REDOC_URL = "/docs", "/redoc"  # the OpenAPI pages, served from the fastapi-offline package


async def _sweep_forever(app: FastAPI, sweeper: Sweeper) -> None:
    while True:
        await asyncio.sleep(app.state.settings.reaper_interval_s)
        try:
            await asyncio.to_thread(sweeper.sweep)
        except Exception as exc:  # Redis restarting: next round
            log.debug("sweep failed: %s", exc)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    sweeper = Sweeper(app.state.store, app.state.storage, app.state.settings)
    task = asyncio.create_task(_sweep_forever(app, sweeper))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(Exception):  # Redis away: the lease expires by itself
            await asyncio.to_thread(sweeper.release)
        await app.state.async_redis.aclose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API with its routes, error handlers and limits; Swagger UI assets are served locally (offline)."""
    settings = settings or get_settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    app = FastAPIOffline(
        title="Neural style transfer",
        version="0.1.0",
        lifespan=_lifespan,
        docs_url=DOCS_URL,
        redoc_url=REDOC_URL,
        description="Gatys et al. (CVPR 2016) style transfer as asynchronous jobs: submit a content image and "
        "style images, follow progress (poll or Server-Sent Events), download the PNG.",
    )
    app.state.settings = settings
    app.state.redis = connect(settings, socket_timeout_s=10, max_connections=settings.redis_max_connections)
    # Event streams block in XREAD for up to sse_keepalive_s: the read timeout must be longer than that.
    app.state.async_redis = connect_async(
        settings, socket_timeout_s=settings.sse_keepalive_s + 10, max_connections=settings.redis_max_connections
    )
    app.state.store = JobStore(app.state.redis, ttl_s=settings.result_ttl_s)
    app.state.sweeps = SweepStore(app.state.redis, ttl_s=settings.result_ttl_s)
    app.state.queue = Queue(settings.queue_name, connection=app.state.redis, serializer=JSONSerializer)
    app.state.job_reader = JobReader(app.state.async_redis, queue_key=app.state.queue.key)
    app.state.storage = open_storage(settings)
    app.state.keys = KeyRing.from_settings(settings)
    app.state.rate_limiter = RateLimiter(app.state.async_redis)
    app.state.holds = HoldLimiter(
        total=max(1, min(settings.max_open_streams, settings.redis_max_connections // 2)),
        per_identity=settings.max_streams_per_key,
    )
    app.state.uploads = HoldLimiter(
        total=settings.max_uploads_in_flight,
        per_identity=settings.max_uploads_in_flight,
        code="too_many_uploads",
        what="uploads being received",
    )
    app.state.metrics_registry, app.state.counters = build_registry(app.state.redis, settings.queue_name)
    install_error_handlers(app)
    install_openapi(app, settings)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(sweeps.router)
    app.include_router(web.router)
    app.include_router(metrics.router)
    app.add_middleware(AccessGuard)  # inside CORS, so preflight requests never need a key
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Location", "ETag", "Retry-After", "X-Request-ID"],
        )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestIds)  # every answer, even a refused body, carries X-Request-ID
    oauth_redirect = app.swagger_ui_oauth2_redirect_url  # None when FastAPI is told to serve no such page
    docs_paths = {DOCS_URL, oauth_redirect} if oauth_redirect else {DOCS_URL}
    app.add_middleware(SecurityHeaders, docs_paths=docs_paths, redoc_path=REDOC_URL)
    if settings.trusted_proxies:  # outermost: everything inside sees the client the proxy names
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    app.add_middleware(UntrustedForwardWarning, trusted=settings.trusted_proxies)  # sees the real peer
    return app
