"""An environment's SSH `authorized_keys`: the entitled users' keys plus its own platform key.

Each environment with SSH access gets a platform key: an ed25519 key pair generated once, the first
time its keys Secret is written, whose private half lives only in the secrets store (workspace scope,
`env-<id>-platform-key`) for the gateways to log in with, and whose public half is the last line of its
`authorized_keys`. It is deleted from the store with the environment. The private key never leaves
this module except into the store: no log line, exception or return value carries it.

`PlatformKeys` caches the public halves in memory, so a resync that re-checks a running environment's
keys costs no secrets-store round trip (only the first look after a restart reads the store).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from remotegpu.core.secrets.store import SecretNotFoundError, SecretPath, SecretScope, SecretStore

AUTHORIZED_KEYS = "authorized_keys"
"""The key of the keys Secret's one entry; the access entrypoint reads `/opt/remotegpu/keys/authorized_keys`."""
PLATFORM_KEY_COMMENT = "remotegpu-platform"


def platform_key_path(workspace_id: uuid.UUID, environment_id: uuid.UUID) -> SecretPath:
    """Where an environment's platform private key is kept."""
    return SecretPath(SecretScope.workspace(workspace_id), f"env-{environment_id}-platform-key")


def authorized_keys_file(user_keys: Sequence[str], platform_public_key: str | None) -> str:
    """The `authorized_keys` content: one line per key, the platform key last; stable for equal input."""
    lines = [*user_keys, *([platform_public_key] if platform_public_key else [])]
    return "".join(f"{line}\n" for line in lines)


class PlatformKeys:
    """Per-environment platform keys in a secrets store, with their public halves cached. Thread-safe;
    one environment is handled by one worker at a time (its lease), so generation never races itself."""

    def __init__(self, store: SecretStore) -> None:
        self.store = store
        self._public: dict[uuid.UUID, str] = {}
        self._lock = threading.Lock()

    def public_key(self, workspace_id: uuid.UUID, environment_id: uuid.UUID) -> str:
        """The environment's platform public key line, generating and storing the pair the first time."""
        with self._lock:
            cached = self._public.get(environment_id)
        if cached is not None:
            return cached
        path = platform_key_path(workspace_id, environment_id)
        try:
            stored = self.store.get(path)
            private = serialization.load_ssh_private_key(
                stored.encode() if isinstance(stored, str) else stored, password=None
            )
        except SecretNotFoundError:
            private = Ed25519PrivateKey.generate()
            self.store.put(
                path,
                private.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.OpenSSH,
                    serialization.NoEncryption(),
                ).decode(),
            )
        public = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        line = f"{public.decode()} {PLATFORM_KEY_COMMENT}"
        with self._lock:
            self._public[environment_id] = line
        return line

    def private_key(self, workspace_id: uuid.UUID, environment_id: uuid.UUID) -> str:
        """The environment's platform private key (OpenSSH PEM) for a gateway to log in with; generated
        with its public half when the environment has none yet."""
        self.public_key(workspace_id, environment_id)
        stored = self.store.get(platform_key_path(workspace_id, environment_id))
        return stored.decode() if isinstance(stored, bytes) else stored

    def delete(self, workspace_id: uuid.UUID, environment_id: uuid.UUID) -> bool:
        """Forget and delete the environment's platform key; whether one was stored."""
        with self._lock:
            self._public.pop(environment_id, None)
        return self.store.delete(platform_key_path(workspace_id, environment_id))
