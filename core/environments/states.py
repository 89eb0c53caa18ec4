"""The vocabulary of desired and observed state.

These enums are the values the database stores (its CHECK constraints are generated from them); the
`transitions` machine that decides which phase moves are legal is built over `Phase`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable


class DesiredState(enum.StrEnum):
    """What the user asked for; written by the API and CLI only."""

    RUNNING = "running"
    STOPPED = "stopped"
    DELETED = "deleted"


class Phase(enum.StrEnum):
    """Where the reconciler has got an environment to; written by the reconciler only."""

    PENDING = "pending"
    ADMITTED = "admitted"
    SCHEDULED = "scheduled"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"

    def is_terminal(self) -> bool:
        """True where no further work happens without a new desire (spec change, start, delete)."""
        return self in {Phase.STOPPED, Phase.DELETED, Phase.FAILED}

    def is_in_progress(self) -> bool:
        """True in a work phase: the reconciler is moving the environment along and owes the cluster an
        action (create, observe, delete); an environment should not stay here for long."""
        return self in {Phase.SCHEDULED, Phase.PROVISIONING, Phase.STOPPING, Phase.DELETING}

    def may_own_pod(self) -> bool:
        """True where a pod of the environment may exist: from its placement until the cluster objects
        are gone (a pod in any other phase is an orphan)."""
        return self in {Phase.SCHEDULED, Phase.PROVISIONING, Phase.RUNNING, Phase.STOPPING, Phase.DELETING}

    @classmethod
    def where(cls, test: Callable[[Phase], bool]) -> frozenset[Phase]:
        """Every phase for which `test` holds, e.g. `Phase.where(Phase.is_terminal)`."""
        return frozenset(phase for phase in cls if test(phase))


def sql_list(values: Iterable[enum.StrEnum]) -> str:
    """`'a', 'b'`: enum values for an SQL `IN (…)`, sorted so a statement's text is stable.

    Only for our enums' values (lower-case words), never for user input; phase names in SQL come from
    the enum this way rather than being written out again.
    """
    return ", ".join(f"'{value}'" for value in sorted(str(value) for value in values))


class UserRole(enum.StrEnum):
    """Platform-wide role of a user."""

    ADMIN = "admin"
    USER = "user"


class WorkspaceRole(enum.StrEnum):
    """Role of a member inside one workspace, strongest first."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class HostHealth(enum.StrEnum):
    """Observed health of a host, from its node's Ready condition and heartbeats."""

    UNKNOWN = "unknown"
    READY = "ready"
    DOWN = "down"


class GpuHealth(enum.StrEnum):
    """Health of one GPU device; only healthy devices are allocated."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    LOST = "lost"
    """The node no longer reports it (inventory sync); healthy again when the node reports it again."""


class Protocol(enum.StrEnum):
    """Transport protocol of a host port."""

    TCP = "tcp"
    UDP = "udp"


class PortPurpose(enum.StrEnum):
    """Why a container port is exposed."""

    SSH = "ssh"
    JUPYTER = "jupyter"
    HTTP = "http"
    CUSTOM = "custom"


class AccessKind(enum.StrEnum):
    """How a user reaches a running environment."""

    SSH = "ssh"
    JUPYTER = "jupyter"
    HTTP = "http"
    GUACAMOLE = "guacamole"
    JUMPSERVER = "jumpserver"


class ImageVisibility(enum.StrEnum):
    """Who may use a catalog image: everyone, or only its owner workspace."""

    PUBLIC = "public"
    PRIVATE = "private"


class ClaimKind(enum.StrEnum):
    """What a claim-history row is about."""

    GPU = "gpu"
    PORT = "port"


class ClaimAction(enum.StrEnum):
    """Whether a claim-history row records taking or giving back a resource."""

    CLAIM = "claim"
    RELEASE = "release"


class MeteredResource(enum.StrEnum):
    """What usage is metered and priced by."""

    GPU = "gpu"
    """GPUs of one model, per GPU-hour."""
    CPU = "cpu"
    """CPU cores, per core-hour."""
    MEMORY = "memory"
    """Memory, per GiB-hour."""
    STORAGE = "storage"
    """A persistent volume, per GiB-month (730 hours), from its creation to its deletion."""

    @property
    def unit(self) -> str:
        """The unit a price of this resource is per."""
        return _UNITS[self]


_UNITS = {
    MeteredResource.GPU: "gpu_hour",
    MeteredResource.CPU: "core_hour",
    MeteredResource.MEMORY: "gib_hour",
    MeteredResource.STORAGE: "gib_month",
}


class InvoiceStatus(enum.StrEnum):
    """An invoice is editable while draft and immutable once finalized."""

    DRAFT = "draft"
    FINALIZED = "finalized"


class ActorKind(enum.StrEnum):
    """Who caused an event."""

    USER = "user"
    RECONCILER = "reconciler"
    SYSTEM = "system"
