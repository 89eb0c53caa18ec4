"""What every request handler needs: the database, the token settings, and the cluster's log reader.

Handlers are synchronous and run in Litestar's thread pool: the core functions they call are
synchronous SQLAlchemy, and one connection checkout covers authentication and the work (one or two
queries per request).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from litestar import Request
from litestar.di import NamedDependency
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Connection, Engine

from remotegpu.api.security import authenticate, authenticate_async
from remotegpu.core.accounts.credential_cache import PrincipalCache
from remotegpu.core.accounts.users import Principal
from remotegpu.core.datasets.configured import DatasetStorages
from remotegpu.core.monitoring.gpu_metrics import GpuMetrics
from remotegpu.core.platform.settings import BillingPeriod
from remotegpu.core.registry.directory import ClientFactory
from remotegpu.core.registry.factory import default_client_factory
from remotegpu.core.secrets.store import SecretStore, SecretsUnavailableError


class LogReader(Protocol):
    """The part of the cluster driver the API uses: a pod's log, line by line."""

    def stream_logs(
        self, environment_id: uuid.UUID, *, follow: bool = False, tail_lines: int | None = None
    ) -> Iterator[str]:
        """The main container's log; with `follow`, new lines as they are written. Raises
        `NoContainerError` before returning when there is no container to read."""
        ...


_READ_ONLY_METHODS = frozenset({"GET", "HEAD"})

AnyRequest = Request[Any, Any, Any]
"""Handlers do not use the request's user, auth or state slots: credentials are read per request."""


@dataclass(frozen=True)
class ApiContext:
    """Shared, immutable state of one API process."""

    engine: Engine
    read_engine: Engine
    """An autocommit engine on the same database, for GET requests."""
    read_pool: AsyncConnectionPool[Any]
    """Autocommit psycopg connections for the hottest reads, which run on the event loop."""
    principals: PrincipalCache
    """Who recent read credentials belong to (emptied whenever any credential changes)."""
    jwt_secret: str
    access_token_lifetime: dt.timedelta
    refresh_token_lifetime: dt.timedelta
    password_reset_lifetime: dt.timedelta = dt.timedelta(hours=24)
    logs: LogReader | None = None
    secret_store: SecretStore | None = None
    """The secrets store the settings configure; None when they configure none (see `secrets`)."""
    stuck_after: dt.timedelta = dt.timedelta(minutes=10)
    workspace_gateways: tuple[str, ...] = ()
    """Gateways a workspace may choose for itself (empty: the deployment's `gateway` for all)."""
    currency: str = "USD"
    """The deployment's one currency (the `currency` setting): every price is in it."""
    billing_period: BillingPeriod = "month"
    """Where usage windows start by default and tails are cut (the `billing_period` setting)."""
    registry_clients: ClientFactory = default_client_factory
    """Builds a configured registry's client for `POST /images/sync` (tests may give their own)."""
    gpu_metrics: GpuMetrics | None = None
    """GPU utilisation from Prometheus; None when `prometheus_url` is not set."""
    idle_threshold_percent: float = 5.0
    """The `idle_gpu_threshold_percent` setting."""
    idle_step: dt.timedelta = dt.timedelta(seconds=60)
    """The `idle_step_seconds` setting."""
    idle_time_scale: float = 1.0
    """The `idle_time_scale` setting."""
    datasets: DatasetStorages | None = None
    """Where datasets' bytes are kept (the `dataset_*` settings)."""

    @property
    def dataset_storages(self) -> DatasetStorages:
        """The dataset backends; a process built without them serves no dataset content."""
        if self.datasets is None:
            raise SecretsUnavailableError("this API process has no dataset storage configured")
        return self.datasets

    def caller(self, request: AnyRequest) -> Principal:
        """The request's caller, authenticated in a short read of its own, for handlers whose work opens
        its own transactions (and calls outside systems between them)."""
        with self.read_engine.connect() as connection:
            return authenticate(connection, request.headers.get("authorization"), self.jwt_secret)

    @property
    def secrets(self) -> SecretStore:
        """The secrets store; `SecretsUnavailableError` (503) naming the missing setting when none is."""
        if self.secret_store is None:
            raise SecretsUnavailableError(
                "no secrets store is configured on this server: set secrets_key (generate one with"
                " `remotegpu secrets generate-key`) or secrets_backend = vault"
            )
        return self.secret_store

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction with no caller (registration and sign-in)."""
        with self.engine.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def acting(self, request: AnyRequest, *, admin: bool = False) -> Iterator[tuple[Connection, Principal]]:
        """One transaction on behalf of the request's caller: 401 without valid credentials, 403 when
        `admin` is asked and the caller is not a platform administrator.

        GET requests read only (HTTP says they are safe), so they run in autocommit: each statement is
        its own snapshot and no BEGIN/COMMIT round trips are paid.
        """
        if request.method in _READ_ONLY_METHODS:
            context: contextlib.AbstractContextManager[Connection] = self.read_engine.connect()
        else:
            context = self.engine.begin()
        with context as connection:
            principal = authenticate(connection, request.headers.get("authorization"), self.jwt_secret)
            if admin:
                principal.require_admin()
            yield connection, principal

    @contextlib.asynccontextmanager
    async def reading(self, request: AnyRequest) -> AsyncIterator[tuple[AsyncConnection[Any], Principal]]:
        """`acting` for read-only handlers on the event loop (no thread hop, no SQLAlchemy); the caller
        may come from the credential cache."""
        async with self.read_pool.connection() as connection:
            yield (
                connection,
                await authenticate_async(
                    connection, request.headers.get("authorization"), self.jwt_secret, self.principals
                ),
            )


Api = NamedDependency[ApiContext]
"""How handlers ask for the context: `api: Api` (provided by `create_app`)."""
