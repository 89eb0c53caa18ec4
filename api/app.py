"""The Litestar application: routers under `/api/v1`, problem-details errors, OpenAPI, metrics, limits.

`create_app` takes everything it needs (no globals), so tests, `remotegpu dev` and `remotegpu api`
build the same app. Handlers are synchronous (core is synchronous SQLAlchemy) and run in a thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.config.response_cache import ResponseCacheConfig
from litestar.di import Provide
from litestar.logging import LoggingConfig
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from sqlalchemy import Engine

from remotegpu.api.console import rendering as console_rendering
from remotegpu.api.console import router as console
from remotegpu.api.context import ApiContext, LogReader
from remotegpu.api.drain import Drain, DrainMiddleware
from remotegpu.api.openapi import document_error_answers
from remotegpu.api.problems import EXCEPTION_HANDLERS, read_request_input
from remotegpu.api.reload import LiveApiSettings
from remotegpu.api.routes import (
    auth,
    billing,
    datasets,
    environments,
    gpu_metrics,
    hosts,
    images,
    ops,
    prices,
    quotas,
    registries,
    registry_credentials,
    ssh_keys,
    users,
    workspaces,
)
from remotegpu.core.accounts.credential_cache import PrincipalCache, listen_for_credential_changes
from remotegpu.core.accounts.sign_in_limits import SignInLimits
from remotegpu.core.datasets.configured import DatasetStorages
from remotegpu.core.monitoring.gpu_metrics import GpuMetrics
from remotegpu.core.platform.db import make_async_pool, make_engine
from remotegpu.core.platform.settings import Settings
from remotegpu.core.registry.directory import ClientFactory
from remotegpu.core.registry.factory import default_client_factory
from remotegpu.core.secrets.configured import secret_store_if_configured

API_PREFIX = "/api/v1"
VERSION = "0.1.0"


class MetricsController(PrometheusController):
    """`/metrics` in the Prometheus text format (request counts and latencies per route); not an API
    operation, so not in the OpenAPI document."""

    path = "/metrics"
    include_in_schema = False


def _cors(origins: list[str]) -> CORSConfig | None:
    """Browsers on `origins` may call the API with credentials; None (no CORS headers) without any."""
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=["X-Request-ID", "Retry-After", "Location"],
        max_age=600,
    )


def create_app(
    settings: Settings,
    engine: Engine,
    *,
    logs: LogReader | None = None,
    registry_clients: ClientFactory = default_client_factory,
    application_name: str = "remotegpu-api",
) -> Litestar:
    """The API app for `engine`, signing tokens with `settings.jwt_secret` (a random key when unset:
    tokens then die with the process, fine for one-off runs, wrong for replicas). Its own connections
    are named `application_name` plus `-read` and `-async` in `pg_stat_activity`."""
    read_engine = make_engine(
        engine.url,
        pool_size=settings.db_pool_size,
        application_name=f"{application_name}-read",
        pre_ping=False,
        autocommit=True,
    )
    read_pool = make_async_pool(
        engine.url, size=settings.db_pool_size, application_name=f"{application_name}-async"
    )

    principals = PrincipalCache()
    listener: list[asyncio.Task[None]] = []

    # Litestar passes the app to hooks that take an argument: these take none.
    async def open_pool() -> None:
        await read_pool.open(wait=True)  # ready means connected
        listener.append(asyncio.create_task(listen_for_credential_changes(principals, engine.url)))

    async def close_pools() -> None:
        for task in listener:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await read_pool.close()
        read_engine.dispose()
        if context.gpu_metrics is not None:
            context.gpu_metrics.close()

    secret_store = secret_store_if_configured(settings, engine)
    context = ApiContext(
        engine=engine,
        read_engine=read_engine,
        read_pool=read_pool,
        principals=principals,
        jwt_secret=settings.jwt_secret or secrets.token_urlsafe(32),
        access_token_lifetime=dt.timedelta(minutes=settings.access_token_minutes),
        refresh_token_lifetime=dt.timedelta(hours=settings.refresh_token_hours),
        password_reset_lifetime=dt.timedelta(hours=settings.password_reset_hours),
        logs=logs,
        secret_store=secret_store,
        workspace_gateways=settings.configured_gateways() if settings.workspace_gateways else (),
        currency=settings.currency,
        billing_period=settings.billing_period,
        registry_clients=registry_clients,
        gpu_metrics=GpuMetrics.from_settings(settings),
        idle_threshold_percent=settings.idle_gpu_threshold_percent,
        idle_step=dt.timedelta(seconds=settings.idle_step_seconds),
        idle_time_scale=settings.idle_time_scale,
        datasets=DatasetStorages.from_settings(settings, secret_store),
    )
    cors = _cors(settings.cors_origins)
    live = LiveApiSettings(
        SignInLimits(settings.login_attempts_per_minute, settings.login_failures_per_account_per_hour), cors
    )
    api = Router(
        API_PREFIX,
        route_handlers=[
            auth.make_router(lambda: live.sign_in_limits),
            users.router,
            ssh_keys.router,
            datasets.router,
            workspaces.router,
            quotas.router,
            hosts.router,
            environments.router,
            gpu_metrics.router,
            images.router,
            billing.router,
            prices.router,
            registry_credentials.router,
            registries.router,
            ops.router,
        ],
    )
    metrics = PrometheusConfig(
        app_name="remotegpu", prefix="remotegpu", group_path=True, exclude=["/metrics"]
    )
    drain = Drain()
    app = Litestar(
        route_handlers=[
            api,
            ops.healthz,
            ops.readyz,
            MetricsController,
            console.make_router(
                settings, context.jwt_secret, lambda: live.sign_in_limits
            ),  # the web console, /ui
        ],
        template_config=console_rendering.template_config(),
        dependencies={"api": Provide(lambda: context, sync_to_thread=False, use_cache=True)},
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=read_request_input,
        middleware=[DefineMiddleware(DrainMiddleware, drain=drain), metrics.middleware],
        cors_config=cors,
        request_max_body_size=settings.max_request_bytes,
        openapi_config=OpenAPIConfig(
            title="RemoteGPU API",
            version=VERSION,
            path=f"{API_PREFIX}/openapi",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http", scheme="bearer", description="JWT access token or API token"
                    )
                }
            ),
            security=[{"bearer": []}],
        ),
        response_cache_config=ResponseCacheConfig(),
        on_startup=[open_pool],
        on_shutdown=[close_pools],
        logging_config=LoggingConfig(log_exceptions="never", configure_root_logger=False),
        debug=False,
    )
    document_error_answers(app)
    app.state.drain = drain  # the server drains through it (`api.drain.DrainingServer`)
    app.state.drain_seconds = settings.drain_seconds
    app.state.live_settings = live  # a settings reload applies through it (`ops.reload`)
    return app
