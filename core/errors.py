"""Errors RemoteGPU raises on purpose; each message names what was wrong and how to fix it."""

from __future__ import annotations


class RemoteGPUError(Exception):
    """Base class of every expected error; the CLI prints its message as one line and exits non-zero."""


class SettingsError(RemoteGPUError):
    """A setting is missing, unknown or malformed; the message names its source (variable or file key)."""


class DatabaseUnavailableError(RemoteGPUError):
    """No Postgres could be reached or started."""
