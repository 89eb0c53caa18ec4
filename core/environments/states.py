"""The vocabulary of desired and observed state.

These enums are the values the database stores (its CHECK constraints are generated from them); the
`transitions` machine that decides which phase moves are legal is built over `Phase`.
"""

from __future__ import annotations

import enum


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

    def holds_claims(self) -> bool:
        """True in the phases where the environment owns GPUs and host ports."""
        return self in {Phase.SCHEDULED, Phase.PROVISIONING, Phase.RUNNING, Phase.STOPPING}


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


class InvoiceStatus(enum.StrEnum):
    """An invoice is editable while draft and immutable once finalized."""

    DRAFT = "draft"
    FINALIZED = "finalized"


class ActorKind(enum.StrEnum):
    """Who caused an event."""

    USER = "user"
    RECONCILER = "reconciler"
    SYSTEM = "system"
