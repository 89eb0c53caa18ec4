"""What every reconciler step needs: the database, the cluster, the settings, and who leads at which epoch."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from remotegpu.core.cluster.driver import ClusterDriver
from remotegpu.core.environments.access_keys import PlatformKeys
from remotegpu.core.gateways.configured import ConfiguredGateways
from remotegpu.core.platform.settings import Settings
from remotegpu.core.registry.directory import RegistryDirectory
from remotegpu.core.secrets.store import SecretStore
from remotegpu.reconciler.telemetry import ReconcilerMetrics


class SimulatedCrashError(Exception):
    """Raised at a kill point by tests: the step dies there, as if the process had been killed."""


def _no_kill(_point: str) -> None:
    return None


@dataclass
class ReconcilerContext:
    """Shared by the loop, its workers and its singleton jobs."""

    engine: Engine
    cluster: ClusterDriver
    settings: Settings
    identity: str
    shard: int = 0
    epoch: int = 0
    """The fencing epoch this process leads with; every write checks it."""
    kill_point: Callable[[str], None] = _no_kill
    """Called at named points inside steps (`after-allocation`, `after-pod-created`, `after-pod-deleted`,
    `after-gateway-connection`, `mid-apply`); tests make it raise `SimulatedCrashError`."""
    secrets: SecretStore | None = None
    """Where per-environment secrets (Jupyter tokens) are kept; None when none is configured, and then an
    environment that needs one waits (`SecretsUnavailable`) naming the setting to set."""
    rng: random.Random = field(default_factory=random.Random)
    wake: Callable[[], None] = lambda: None
    """Wakes the loop (a step requeued work for right now)."""
    platform_keys: PlatformKeys | None = None
    """Environments' platform SSH keys in the secrets store; None when no store is configured (the keys
    Secret then holds the users' keys only)."""
    gateways: ConfiguredGateways | None = None
    """The deployment's access gateways (Guacamole, Jumpserver); None: direct access only."""
    metrics: ReconcilerMetrics = field(default_factory=ReconcilerMetrics)
    """This replica's Prometheus metrics (steps, errors, jobs, leadership)."""
    registries: RegistryDirectory | None = None
    """The configured registries: the catalog sync reads them, the pinning step resolves tags at them.
    None: no registry is synced and images run by tag."""

    def backoff(self, attempt: int) -> dt.timedelta:
        """Delay before retry number `attempt` (0-based): exponential, capped, with jitter in [½, 1]."""
        base = self.settings.backoff_base_seconds * (2**attempt)
        capped = min(self.settings.backoff_cap_seconds, base)
        return dt.timedelta(seconds=capped * (0.5 + self.rng.random() / 2))

    @property
    def lease(self) -> dt.timedelta:
        """How long a worker owns an environment it fetched."""
        return dt.timedelta(seconds=self.settings.lease_seconds)

    @property
    def resync(self) -> dt.timedelta:
        """How soon a settled environment is looked at again."""
        return dt.timedelta(seconds=self.settings.resync_seconds)
