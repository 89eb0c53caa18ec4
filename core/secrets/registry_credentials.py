"""The platform's registry credentials: one Docker config JSON (`~/.docker/config.json` form) kept in the
secrets store, written by platform admins, read by the cluster driver for the image pull Secret.

The value lives at `platform: registry-credentials`. Admins replace it (or merge registries into it)
through `set_registry_credentials`; nobody reads it back through the API, which only says which
registries are configured. The driver reads it through `CachedRegistryCredentials`: a read when a
namespace is first prepared, then at most once per `ttl`, so a change reaches new pods within the TTL
without a store round trip per pod. The old `registry_credentials` setting is only imported once, at
reconciler start (`import_registry_credentials_setting`).

Validation errors name the field (`$.auths["harbor.example.org"].auth`) and the fix, never a value: a
password pasted into the wrong field must not come back in a problem document or a log line.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection

from remotegpu.core.accounts.users import Principal
from remotegpu.core.platform.errors import InvalidInputError
from remotegpu.core.platform.events import record_mutation
from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.store import (
    PLATFORM,
    SecretNotFoundError,
    SecretPath,
    SecretsAccessDeniedError,
    SecretStore,
    SecretsUnavailableError,
)

_log = logging.getLogger(__name__)

REGISTRY_CREDENTIALS = SecretPath(PLATFORM, "registry-credentials")
"""Where the platform's Docker config JSON is kept."""

_EXAMPLE = '{"auths": {"registry.example.org": {"auth": "<base64 of user:password>"}}}'
_MAX_REGISTRY_LENGTH = 253


def _field(registry: str, key: str | None = None) -> str:
    path = f"$.auths[{json.dumps(registry)}]"
    return f"{path}.{key}" if key else path


def _check_entry(registry: str, entry: Any) -> None:
    if not registry or len(registry) > _MAX_REGISTRY_LENGTH or any(c.isspace() for c in registry):
        raise InvalidInputError(
            "$.auths", "each key is a registry host (e.g. harbor.example.org), without spaces"
        )
    if not isinstance(entry, dict):
        raise InvalidInputError(
            _field(registry), "must be an object with `auth` (or `username` and `password`)"
        )
    auth = entry.get("auth")
    if auth is not None:
        if not isinstance(auth, str):
            raise InvalidInputError(_field(registry, "auth"), "must be a string: base64 of user:password")
        try:
            decoded = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidInputError(
                _field(registry, "auth"), "is not base64 text; give base64 of user:password"
            ) from None
        if ":" not in decoded:
            raise InvalidInputError(
                _field(registry, "auth"), "must be base64 of user:password (no ':' found)"
            )
        return
    username, password = entry.get("username"), entry.get("password")
    if not (isinstance(username, str) and username and isinstance(password, str) and password):
        raise InvalidInputError(
            _field(registry), "needs `auth` (base64 of user:password) or both `username` and `password`"
        )


def parse_docker_config(document: Any) -> dict[str, Any]:
    """The document checked as a Docker config with at least one registry under `auths`; raises
    `InvalidInputError` naming the field (never its value)."""
    if not isinstance(document, dict):
        raise InvalidInputError("$", f"must be a Docker config JSON object, e.g. {_EXAMPLE}")
    auths = document.get("auths")
    if not isinstance(auths, dict) or not auths:
        raise InvalidInputError("$.auths", f"must name at least one registry, e.g. {_EXAMPLE}")
    for registry, entry in auths.items():
        _check_entry(registry, entry)
    return document


def docker_config_for(registry: str, username: str, password: str) -> dict[str, Any]:
    """The Docker config of one registry login, as `docker login` writes it."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"auths": {registry: {"auth": auth}}}


def _stored(store: SecretStore) -> dict[str, Any] | None:
    try:
        value = store.get(REGISTRY_CREDENTIALS)
    except SecretNotFoundError:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    loaded = json.loads(text)
    return loaded if isinstance(loaded, dict) else None


def _serialised(document: Mapping[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def set_registry_credentials(
    connection: Connection,
    principal: Principal,
    store: SecretStore,
    document: Any,
    *,
    merge: bool = False,
) -> list[str]:
    """Store the platform's registry credentials (platform admins); with `merge`, the registries given
    are added to those configured (replacing their entries), else the document replaces them all.
    Returns the registries now configured; the audit event names them, never a credential."""
    principal.require_admin()
    config = parse_docker_config(document)
    if merge:
        current = _stored(store) or {}
        auths = dict(current.get("auths") or {})
        auths.update(config["auths"])
        config = {**current, **config, "auths": auths}
    store.put(REGISTRY_CREDENTIALS, _serialised(config))
    registries = sorted(config["auths"])
    record_mutation(
        connection,
        principal.user_id,
        "RegistryCredentialsSet",
        f"registry credentials set for {', '.join(registries)}",
        data={"registries": registries},
    )
    return registries


def remove_registry_credentials(
    connection: Connection, principal: Principal, store: SecretStore, registry: str
) -> list[str]:
    """Forget the credentials of `registry` (platform admins); idempotent: a registry without any is
    already gone. Returns the registries still configured. Pods created from now on no longer name the
    pull Secret once no registry is left; the audit event names the registry, never a credential."""
    principal.require_admin()
    current = _stored(store) or {}
    auths = dict(current.get("auths") or {})
    if auths.pop(registry, None) is None:
        return sorted(auths)
    if auths:
        store.put(REGISTRY_CREDENTIALS, _serialised({**current, "auths": auths}))
    else:
        store.delete(REGISTRY_CREDENTIALS)
    record_mutation(
        connection,
        principal.user_id,
        "RegistryCredentialsRemoved",
        f"registry credentials removed for {registry}",
        data={"registry": registry},
    )
    return sorted(auths)


def configured_registries(principal: Principal, store: SecretStore) -> list[str]:
    """The registries the platform has credentials for (platform admins); no credential is returned."""
    principal.require_admin()
    config = _stored(store)
    return sorted((config or {}).get("auths") or {})


def import_registry_credentials_setting(settings: Settings, store: SecretStore) -> bool:
    """Move the old `registry_credentials` setting into the store once: only when it is set and the store
    has none. Whether it was imported. The value is never logged."""
    if not settings.registry_credentials:
        return False
    try:
        store.get(REGISTRY_CREDENTIALS)
    except SecretNotFoundError:
        pass
    else:
        _log.warning(
            "Ignored the registry_credentials setting: the secrets store has registry credentials;"
            " remove the setting (REMOTEGPU_REGISTRY_CREDENTIALS or registry_credentials in the config file)"
        )
        return False
    try:
        config = parse_docker_config(json.loads(settings.registry_credentials))
    except (ValueError, InvalidInputError) as error:
        field = getattr(error, "field", "$")
        raise InvalidInputError(
            "registry_credentials", f"the setting is not a Docker config JSON ({field}); fix or remove it"
        ) from None
    store.put(REGISTRY_CREDENTIALS, _serialised(config))
    _log.warning(
        "Imported the registry_credentials setting into the secrets store; remove the setting"
        " (REMOTEGPU_REGISTRY_CREDENTIALS or registry_credentials in the config file): from now on"
        " `remotegpu registry login` or PUT /api/v1/registry-credentials change them",
        extra={"registries": sorted(config["auths"])},
    )
    return True


class CachedRegistryCredentials:
    """The current Docker config JSON for the driver, read from the store at most once per `ttl`.

    Thread-safe (reconciler workers share it). When the store cannot answer, the last value read is
    kept (pods keep getting the credentials they had); with none read yet the error propagates, so the
    step retries rather than creating a pod without its pull Secret."""

    def __init__(
        self, store: SecretStore, ttl_seconds: float = 30.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._value: str | None = None
        self._read_at: float | None = None

    def __repr__(self) -> str:
        return f"CachedRegistryCredentials(ttl={self._ttl}s)"

    def __call__(self) -> str | None:
        """The docker config JSON as stored now (within the TTL), or None when none is configured."""
        with self._lock:
            now = self._monotonic()
            if self._read_at is not None and now - self._read_at < self._ttl:
                return self._value
            try:
                config = _stored(self._store)
            except (SecretsUnavailableError, SecretsAccessDeniedError) as error:
                if self._read_at is None:
                    raise
                _log.warning(
                    "Kept the registry credentials read before; the secrets store did not answer",
                    extra={"error": str(error)},
                )
                self._read_at = now
                return self._value
            self._value = None if config is None else _serialised(config)
            self._read_at = now
            return self._value

    def refresh(self) -> None:
        """Read the store again at the next call (after a change made in this process)."""
        with self._lock:
            self._read_at = None
