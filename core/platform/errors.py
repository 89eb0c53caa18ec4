"""Errors RemoteGPU raises on purpose; each message names what was wrong and how to fix it."""

from __future__ import annotations


class RemoteGPUError(Exception):
    """Base class of every expected error; the CLI prints its message as one line and exits non-zero."""


class SettingsError(RemoteGPUError):
    """A setting is missing, unknown or malformed; the message names its source (variable or file key)."""


class DatabaseUnavailableError(RemoteGPUError):
    """No Postgres could be reached or started."""


class InvalidInputError(RemoteGPUError):
    """A request field holds a value we cannot accept; `field` names it (a JSON path or a parameter)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


class NotFoundError(RemoteGPUError):
    """The thing does not exist, or the caller may not know that it does (both read the same)."""


class ForbiddenError(RemoteGPUError):
    """The caller is known and may see the thing, but their role does not allow this action."""


class ConflictError(RemoteGPUError):
    """The request clashes with the current state (a taken name, the last owner leaving); `field` names
    the body field at fault (a JSON path, as InvalidInputError's), and `message` does not repeat it."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.detail = message


class AuthenticationError(RemoteGPUError):
    """No valid credentials: a missing, expired or revoked token, or a wrong password."""


class UpstreamUnavailableError(RemoteGPUError):
    """An outside system RemoteGPU called for the request (a registry) could not answer now; try again."""
