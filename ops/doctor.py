"""`remotegpu doctor`'s checks: one per part of a deployment, each with its state and what to do.

Parts: the database (reachable, migrated), the cluster (reachable, nodes, GPU resources), the registry,
the secrets store, the access gateways and Prometheus. A part the settings leave out is `not configured`
and its row names the setting that turns it on; a configured part either answers (`ok`) or does not
(`failed`, with why). Each check runs on a thread of its own and is given `timeout_s`: a part that hangs
is `failed` ("no answer in 5 s") and the others are still reported. Nothing here needs `DATABASE_URL`:
without it the database (and the built-in secrets store, which lives in it) is `not configured`.

The registry check reads the configured registries (`remotegpu registry add`) and, with each one's
stored login, lists its first repository through its own client (OCI Distribution or Harbor), so a
registry that does not answer or refuses the login is `failed` with why; with none configured, the
registries named in the platform-wide pull credentials answer the OCI base endpoint (`GET /v2/`).
"""

from __future__ import annotations

import enum
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import Engine, text

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.core.platform.settings import Settings, redact_url


class PartState(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"
    NOT_CONFIGURED = "not configured"


@dataclass(frozen=True)
class PartReport:
    """One row of the doctor's table."""

    part: str
    state: PartState
    detail: str


class CheckFailedError(Exception):
    """A configured part did not answer as it should; the message says how (never a secret)."""


class NotConfiguredError(Exception):
    """The settings leave this part out; the message names the setting that turns it on."""


@dataclass
class Doctor:
    """The checks of one deployment's settings; `engine` is made once, when a database is configured."""

    settings: Settings
    timeout_s: float = 5.0
    _engine: Engine | None = field(default=None, repr=False)
    _engine_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def checks(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            ("database", self.database),
            ("cluster", self.cluster),
            ("registry", self.registry),
            ("secrets", self.secrets),
            ("gateway", self.gateway),
            ("prometheus", self.prometheus),
        ]

    def run(self) -> list[PartReport]:
        """Every check at once, each within `timeout_s` (a little more for the first connection)."""
        try:
            return run_checks(self.checks(), self.timeout_s)
        finally:
            if self._engine is not None:
                self._engine.dispose()

    # -- parts --------------------------------------------------------------------------------------
    def engine(self) -> Engine:
        if self.settings.database_url is None:
            raise NotConfiguredError(
                "set DATABASE_URL (or database_url), e.g. postgresql://USER@HOST:5432/DB"
            )
        with self._engine_lock:
            return self._make_engine(self.settings.database_url)

    def _make_engine(self, url: str) -> Engine:
        if self._engine is None:
            from sqlalchemy import create_engine

            from remotegpu.core.platform.db import normalise_url

            self._engine = create_engine(
                normalise_url(url),
                pool_size=2,
                hide_parameters=True,
                connect_args={
                    "connect_timeout": max(int(self.timeout_s), 1),
                    "application_name": "remotegpu-doctor",
                },
            )
        return self._engine

    def database(self) -> str:
        from alembic.runtime.migration import MigrationContext

        from remotegpu.ops.migrate import head_revision

        engine = self.engine()
        try:
            with engine.connect() as connection:
                connection.execute(text(f"SET statement_timeout = {int(self.timeout_s * 1000)}"))
                version = connection.execute(text("SHOW server_version")).scalar_one()
                current = MigrationContext.configure(connection).get_current_revision()
        except Exception as error:
            raise CheckFailedError(
                f"{redact_url(self.settings.database_url or '')}: {_first_line(error)}"
            ) from None
        head = head_revision()
        where = f"PostgreSQL {version} at {redact_url(self.settings.database_url or '')}"
        if current != head:
            raise CheckFailedError(
                f"{where} is at schema revision {current or 'none'}, not {head}: run `remotegpu db upgrade`"
            )
        return f"{where}, migrated (revision {head})"

    def cluster(self) -> str:
        import os

        from kubernetes import client  # type: ignore[import-untyped,unused-ignore]

        from remotegpu.core.cluster.kubernetes.client import api_client_from_kubeconfig

        if self.settings.kubeconfig is None and not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise NotConfiguredError("set kubeconfig (REMOTEGPU_KUBECONFIG) to the cluster's kubeconfig file")
        try:
            api = client.CoreV1Api(api_client_from_kubeconfig(self.settings.kubeconfig))
            nodes: Any = api.list_node(_request_timeout=self.timeout_s, _preload_content=False)
            items = json.loads(nodes.data)["items"]
        except Exception as error:
            raise CheckFailedError(f"the cluster does not answer: {_first_line(error)}") from None
        ready = sum(1 for node in items if _node_ready(node))
        gpus = sum(
            int(node.get("status", {}).get("allocatable", {}).get("nvidia.com/gpu", 0)) for node in items
        )
        text_ = f"{len(items)} nodes ({ready} ready), {gpus} GPUs (nvidia.com/gpu allocatable)"
        if gpus == 0:
            text_ += "; no node offers nvidia.com/gpu: is the NVIDIA device plugin installed?"
        return text_

    def registry(self) -> str:
        configured = self._configured_registries()
        if configured:
            return self._check_configured(configured)
        store = self._store_or_none()
        targets = registry_targets(store) if store is not None else []
        if not targets:
            raise NotConfiguredError(
                "no registry configured: `remotegpu registry add NAME --url URL` (public images need none)"
            )
        answers = []
        with httpx.Client(timeout=self.timeout_s) as http:
            for host in targets:
                scheme = "http" if host.split(":")[0] in {"localhost", "127.0.0.1"} else "https"
                try:
                    status = http.get(f"{scheme}://{host}/v2/").status_code
                except httpx.HTTPError as error:
                    raise CheckFailedError(f"{host} does not answer ({type(error).__name__})") from None
                if status not in (200, 401):
                    raise CheckFailedError(f"{host}/v2/ answered HTTP {status}: not an OCI registry?")
                answers.append(host)
        return f"{len(answers)} registries answer: {', '.join(answers)}"

    def _configured_registries(self) -> list[Any]:
        if self.settings.database_url is None:
            return []
        from remotegpu.core.registry.configured import load_registries

        try:
            with self.engine().connect() as connection:
                return load_registries(connection)
        except Exception:  # the database row says why; the registry row falls back to the credentials
            return []

    def _check_configured(self, configured: list[Any]) -> str:
        from remotegpu.core.registry.client import RegistryAuthError, RegistryUnavailableError
        from remotegpu.core.registry.directory import RegistryDirectory
        from remotegpu.core.registry.factory import default_client_factory

        directory = RegistryDirectory(self.engine(), self._store_or_none(), default_client_factory)
        answers = []
        for config in configured:
            client = directory.client(config)
            try:
                next(iter(client.repositories()), None)
            except RegistryAuthError as error:
                raise CheckFailedError(
                    f"{config.name}: the login is refused ({_first_line(error)})"
                ) from None
            except RegistryUnavailableError as error:
                raise CheckFailedError(f"{config.name}: {_first_line(error)}") from None
            finally:
                client.close()
            answers.append(f"{config.name} ({config.kind})")
        return f"{len(answers)} configured registries answer: {', '.join(answers)}"

    def secrets(self) -> str:
        from remotegpu.core.secrets.store import PLATFORM, SecretPath

        store = self._store()
        try:
            names = store.list(PLATFORM)
            if names:  # one read proves the key (built-in) or the token's policy (Vault) works
                store.get(SecretPath(PLATFORM, names[0]))
        except Exception as error:
            raise CheckFailedError(f"{self.settings.secrets_backend}: {_first_line(error)}") from None
        where = self.settings.vault_url if self.settings.secrets_backend == "vault" else "in the database"
        return f"{self.settings.secrets_backend} store {where}: readable ({len(names)} platform secrets)"

    def gateway(self) -> str:
        from remotegpu.core.gateways.configured import ConfiguredGateways

        gateways = ConfiguredGateways(self.settings, self._store_or_none())
        if not gateways.kinds():
            raise NotConfiguredError(
                "direct access only (host ports); set gateway = guacamole or jumpserver with guacamole_url"
                " or jumpserver_url to add one"
            )
        shown = []
        for kind in gateways.kinds():
            try:
                gateway = gateways.get(kind)
                connections = len(gateway.connected_environments())
                gateway.close()
            except Exception as error:
                raise CheckFailedError(f"{kind}: {_first_line(error)}") from None
            shown.append(f"{kind} signed in ({connections} connections)")
        return "; ".join(shown)

    def prometheus(self) -> str:
        from remotegpu.core.monitoring.gpu_metrics import GPU_UTIL
        from remotegpu.core.monitoring.prometheus import PrometheusClient, PrometheusUnavailableError

        url = self.settings.prometheus_url
        if url is None:
            raise NotConfiguredError(
                "set prometheus_url to the Prometheus that scrapes NVIDIA's DCGM exporter"
            )
        client = PrometheusClient(url, timeout_s=self.timeout_s)
        selector = "{" + self.settings.dcgm_selector + "}" if self.settings.dcgm_selector else ""
        try:
            client.ready()
            found = client.query(f"count({GPU_UTIL}{selector})")
        except PrometheusUnavailableError as error:
            raise CheckFailedError(str(error)) from None
        finally:
            client.close()
        gpus = int(found[0].points[0][1]) if found and found[0].points else 0
        url = client.url  # without any password the setting carries
        if gpus == 0:
            return f"{url} ready; no {GPU_UTIL} series yet: scrape NVIDIA's DCGM exporter"
        return f"{url} ready; {gpus} GPUs report {GPU_UTIL}"

    # -- helpers ------------------------------------------------------------------------------------
    def _store(self) -> Any:
        from remotegpu.core.secrets.configured import open_secret_store

        if self.settings.secrets_backend == "builtin":
            if not self.settings.secrets_key:
                raise NotConfiguredError(
                    "set secrets_key (`remotegpu secrets generate-key`) or secrets_backend = vault"
                )
            if self.settings.database_url is None:
                raise NotConfiguredError("the built-in store lives in the database: set DATABASE_URL")
            return open_secret_store(self.settings, self.engine())
        try:
            return open_secret_store(self.settings, None)  # type: ignore[arg-type]  # Vault needs no engine
        except RemoteGPUError as error:
            raise NotConfiguredError(str(error)) from None

    def _store_or_none(self) -> Any:
        try:
            return self._store()
        except NotConfiguredError:
            return None


def registry_targets(store: Any) -> list[str]:
    """The registries named in the platform-wide pull credentials (checked when none is configured)."""
    from remotegpu.core.secrets.registry_credentials import REGISTRY_CREDENTIALS
    from remotegpu.core.secrets.store import SecretNotFoundError

    if store is None:
        return []
    try:
        value = store.get(REGISTRY_CREDENTIALS)
    except SecretNotFoundError:
        return []
    except Exception as error:
        raise CheckFailedError(f"registry credentials not readable: {_first_line(error)}") from None
    document = json.loads(value if isinstance(value, str) else value.decode())
    return sorted(document.get("auths", {}))


def run_checks(checks: Sequence[tuple[str, Callable[[], str]]], timeout_s: float) -> list[PartReport]:
    """Run `checks` at once on daemon threads (a hung one cannot keep the process alive) and report
    each: its text, `not configured`, a failure, or no answer in time."""
    results: dict[str, PartReport] = {}

    def run(part: str, check: Callable[[], str]) -> None:
        try:
            results[part] = PartReport(part, PartState.OK, check())
        except NotConfiguredError as error:
            results[part] = PartReport(part, PartState.NOT_CONFIGURED, str(error))
        except CheckFailedError as error:
            results[part] = PartReport(part, PartState.FAILED, str(error))
        except Exception as error:
            results[part] = PartReport(
                part, PartState.FAILED, f"{type(error).__name__}: {_first_line(error)}"
            )

    threads = [threading.Thread(target=run, args=c, name=f"doctor-{c[0]}", daemon=True) for c in checks]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s + 1  # one more second: a check's own timeout answers first
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    return [
        results.get(part, PartReport(part, PartState.FAILED, f"no answer in {timeout_s:g} s"))
        for part, _ in checks
    ]


def _node_ready(node: dict[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
