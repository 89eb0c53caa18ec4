"""The secrets store's interface, its addresses and its errors, shared by every backend.

A secret lives at a `SecretPath`: a scope (the platform, or one workspace) and a name. Values are `str`
or `bytes` and come back as the type they were written as. Nothing here ever puts a value into an
exception message, a log record or a `repr()`: errors name the path and the cause, never what was stored.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from remotegpu.core.platform.errors import InvalidInputError, NotFoundError, RemoteGPUError

SecretValue = str | bytes

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""Names are one path segment (no `/`), so a Vault path cannot climb into another scope."""


@dataclass(frozen=True, order=True)
class SecretScope:
    """Who a secret belongs to: the platform (`workspace_id` None) or one workspace."""

    workspace_id: uuid.UUID | None = None

    @classmethod
    def platform(cls) -> SecretScope:
        return cls(None)

    @classmethod
    def workspace(cls, workspace_id: uuid.UUID) -> SecretScope:
        return cls(workspace_id)

    def __str__(self) -> str:
        return "platform" if self.workspace_id is None else f"workspace {self.workspace_id}"


PLATFORM = SecretScope.platform()


@dataclass(frozen=True, order=True)
class SecretPath:
    """Where one secret lives; its name is checked on construction."""

    scope: SecretScope
    name: str

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise InvalidInputError(
                "name",
                "a secret name is 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
            )

    def __str__(self) -> str:
        return f"{self.scope}: {self.name}"


@runtime_checkable
class SecretStore(Protocol):
    """Keeps secret values by path. Every method may raise `SecretsUnavailableError` or
    `SecretsAccessDeniedError`; implementations are safe to share between threads."""

    def put(self, path: SecretPath, value: SecretValue) -> None:
        """Store `value` at `path`, replacing any earlier value."""
        ...

    def get(self, path: SecretPath) -> SecretValue:
        """The value last stored at `path`, as the type it was stored as; `SecretNotFoundError` if none."""
        ...

    def delete(self, path: SecretPath) -> bool:
        """Remove the secret at `path`; whether there was one."""
        ...

    def list(self, scope: SecretScope) -> list[str]:
        """The names of the scope's secrets, sorted."""
        ...


class SecretNotFoundError(NotFoundError):
    """No secret is stored at the path."""

    def __init__(self, path: SecretPath) -> None:
        super().__init__(f"no secret {path.name!r} in the {path.scope} scope")
        self.path = path


class SecretsUnavailableError(RemoteGPUError):
    """The store cannot answer now (Vault sealed or unreachable, a value no configured key decrypts);
    the message says what to fix."""


class SecretsAccessDeniedError(RemoteGPUError):
    """The store refused our credentials (Vault's 403: a bad or expired token, or a policy that does not
    cover the path)."""


def encode_value(value: SecretValue) -> tuple[bytes, bool]:
    """The bytes of `value` and whether it was text, so `decode_value` gives back the same type."""
    if isinstance(value, str):
        return value.encode(), True
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), False
    raise TypeError(f"a secret value is str or bytes, not {type(value).__name__}")


def decode_value(data: bytes, is_text: bool) -> SecretValue:
    return data.decode() if is_text else data
