"""The Vault secrets store: HashiCorp Vault's KV v2 engine through `hvac`.

Each scope has a path prefix of its own under `<mount>/data/<prefix>/`: `platform/<name>` for the
platform, `workspaces/<workspace id>/<name>` for a workspace, so a Vault policy can grant exactly one
workspace's secrets. A value is stored as `{"value": …, "encoding": "text" | "base64"}`.

Login is a static token or AppRole (role_id and secret_id). The token's expiry comes from the login
answer or `auth/token/lookup-self`; before each call, once less than a third of its lifetime is left, the
store renews it (`auth/token/renew-self`), and an AppRole store logs in again when renewal is refused.
Vault's answers map to the store's errors: 404 to `SecretNotFoundError`, 401/403 to
`SecretsAccessDeniedError`, sealed (503) or unreachable to `SecretsUnavailableError`.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import hvac
import hvac.exceptions

from remotegpu.core.platform import clock
from remotegpu.core.secrets.store import (
    SecretNotFoundError,
    SecretPath,
    SecretsAccessDeniedError,
    SecretScope,
    SecretsUnavailableError,
    SecretValue,
    decode_value,
    encode_value,
)

log = logging.getLogger(__name__)

RENEW_WHEN_LEFT = 1 / 3
"""Renew the token once less than this share of its lifetime is left."""


@dataclass(frozen=True)
class TokenLogin:
    """Log in with a token issued elsewhere (renewed while it is renewable)."""

    token: str = field(repr=False)


@dataclass(frozen=True)
class AppRoleLogin:
    """Log in with AppRole; log in again whenever the token can no longer be renewed."""

    role_id: str = field(repr=False)
    secret_id: str = field(repr=False)
    mount: str = "approle"


VaultLogin = TokenLogin | AppRoleLogin


class VaultSecretStore:
    """`SecretStore` on a Vault KV v2 mount; thread-safe (one token, refreshed under a lock)."""

    def __init__(
        self,
        url: str,
        login: VaultLogin,
        *,
        mount: str = "secret",
        prefix: str = "remotegpu",
        timeout: float = 10.0,
        now: Callable[[], dt.datetime] = clock.now,
    ) -> None:
        self.url = url
        self.mount = mount
        self.prefix = prefix.strip("/")
        self._login = login
        self._now = now
        self._client = hvac.Client(url=url, timeout=timeout)
        self._lock = threading.Lock()
        self._logged_in = False
        self._expires_at: dt.datetime | None = None
        self._lifetime = dt.timedelta(0)
        self._renewable = False

    def __repr__(self) -> str:
        return f"VaultSecretStore(url={self.url!r}, mount={self.mount!r}, login={self._login!r})"

    def put(self, path: SecretPath, value: SecretValue) -> None:
        data, is_text = encode_value(value)
        stored = (
            {"value": data.decode(), "encoding": "text"}
            if is_text
            else {"value": base64.b64encode(data).decode(), "encoding": "base64"}
        )
        with self._answers(str(path)):
            self._kv.create_or_update_secret(path=self._path(path), secret=stored, mount_point=self.mount)

    def get(self, path: SecretPath) -> SecretValue:
        with self._answers(str(path), missing=SecretNotFoundError(path)):
            answer = self._kv.read_secret_version(
                path=self._path(path), mount_point=self.mount, raise_on_deleted_version=True
            )
        stored = answer["data"]["data"] or {}
        if stored.get("encoding") == "base64":
            return decode_value(base64.b64decode(stored.get("value", "")), is_text=False)
        return str(stored.get("value", ""))

    def delete(self, path: SecretPath) -> bool:
        with self._answers(str(path)):
            try:
                self._kv.read_secret_metadata(path=self._path(path), mount_point=self.mount)
            except hvac.exceptions.InvalidPath:
                return False
            self._kv.delete_metadata_and_all_versions(path=self._path(path), mount_point=self.mount)
        return True

    def list(self, scope: SecretScope) -> list[str]:
        with self._answers(f"the {scope} scope"):
            try:
                answer = self._kv.list_secrets(path=self._folder(scope), mount_point=self.mount)
            except hvac.exceptions.InvalidPath:
                return []
        return sorted(key for key in answer["data"]["keys"] if not key.endswith("/"))

    @property
    def _kv(self) -> Any:
        self._ensure_token()
        return self._client.secrets.kv.v2

    def _folder(self, scope: SecretScope) -> str:
        if scope.workspace_id is None:
            return f"{self.prefix}/platform"
        return f"{self.prefix}/workspaces/{scope.workspace_id}"

    def _path(self, path: SecretPath) -> str:
        return f"{self._folder(path.scope)}/{path.name}"

    def _ensure_token(self) -> None:
        """Log in once, and renew (or log in again) when less than a third of the token's life is left."""
        with self._lock:
            if not self._logged_in:
                self._log_in()
                return
            if self._expires_at is None or self._now() < self._expires_at - self._lifetime * RENEW_WHEN_LEFT:
                return
            if self._renewable:
                try:
                    self._take_lease(self._client.auth.token.renew_self()["auth"])
                    log.info("Vault token renewed", extra={"vault": self.url, "ttl_s": self._ttl_seconds()})
                    return
                except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
                    if not isinstance(self._login, AppRoleLogin):
                        raise
            if isinstance(self._login, AppRoleLogin):
                self._log_in()

    def _log_in(self) -> None:
        if isinstance(self._login, AppRoleLogin):
            try:
                answer = self._client.auth.approle.login(
                    role_id=self._login.role_id,
                    secret_id=self._login.secret_id,
                    mount_point=self._login.mount,
                )
            except hvac.exceptions.InvalidRequest:
                raise SecretsAccessDeniedError(
                    f"Vault at {self.url} refused the AppRole login (invalid role or secret ID):"
                    " check vault_role_id and vault_secret_id"
                ) from None
            self._take_lease(answer["auth"])
            log.info(
                "Logged in to Vault with AppRole", extra={"vault": self.url, "ttl_s": self._ttl_seconds()}
            )
        else:
            self._client.token = self._login.token
            data = self._client.auth.token.lookup_self()["data"]
            self._take_lease(
                {"lease_duration": data.get("ttl", 0), "renewable": data.get("renewable", False)}
            )
        self._logged_in = True

    def _take_lease(self, auth: dict[str, Any]) -> None:
        if auth.get("client_token"):
            self._client.token = auth["client_token"]
        seconds = int(auth.get("lease_duration") or 0)
        self._lifetime = dt.timedelta(seconds=seconds)
        self._expires_at = self._now() + self._lifetime if seconds > 0 else None  # 0: never expires
        self._renewable = bool(auth.get("renewable"))

    def _ttl_seconds(self) -> int:
        return int(self._lifetime.total_seconds())

    @contextlib.contextmanager
    def _answers(self, what: str, missing: Exception | None = None) -> Iterator[None]:
        """Turn Vault's and the network's failures into the store's errors, naming `what` but never a value
        (and never chaining hvac's exception, whose text is Vault's answer)."""
        try:
            yield
        except hvac.exceptions.InvalidPath:
            if missing is None:
                raise SecretsUnavailableError(
                    f"Vault at {self.url} has no KV v2 mount {self.mount!r}"
                ) from None
            raise missing from None
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            raise SecretsAccessDeniedError(
                f"Vault at {self.url} denied access to {what} (permission denied): check the token or"
                " AppRole and that its policy covers the mount and prefix"
            ) from None
        except hvac.exceptions.VaultDown as error:
            state = "sealed" if "sealed" in " ".join(error.errors or []) else "unavailable (HTTP 503)"
            raise SecretsUnavailableError(
                f"Vault at {self.url} is {state}: {what} cannot be read or written until it is unsealed"
            ) from None
        except hvac.exceptions.VaultError as error:
            raise SecretsUnavailableError(
                f"Vault at {self.url} failed on {what} ({type(error).__name__})"
            ) from None
        except OSError as error:  # requests' errors are OSErrors: refused, timed out, TLS
            raise SecretsUnavailableError(
                f"Vault at {self.url} is unreachable ({type(error).__name__}): check vault_url"
            ) from None
