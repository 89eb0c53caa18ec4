"""The built-in secrets store: values Fernet-encrypted in Postgres under keys from `secrets_key`.

`secrets_key` holds one or more Fernet keys separated by commas. The first encrypts every write; all of
them decrypt, so a new key is rolled out by putting it first and keeping the old ones behind it, then
running `rotate_secrets` (`remotegpu secrets rotate`), which re-encrypts every row with the first key.
After that the old keys can be dropped. Fernet authenticates as well as encrypts: a changed ciphertext
fails to decrypt instead of reading as garbage.
"""

from __future__ import annotations

import logging
import uuid

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import ColumnElement, Engine, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert

from remotegpu.core.models.secrets import StoredSecret
from remotegpu.core.platform.errors import SettingsError
from remotegpu.core.secrets.store import (
    SecretNotFoundError,
    SecretPath,
    SecretScope,
    SecretsUnavailableError,
    SecretValue,
    decode_value,
    encode_value,
)

log = logging.getLogger(__name__)

_ROTATE_BATCH = 500


def generate_secrets_key() -> str:
    """A fresh random key for `secrets_key`."""
    return Fernet.generate_key().decode()


class SecretKeys:
    """The keys of a `secrets_key` setting: the first encrypts, every one decrypts. Its repr shows only
    how many there are."""

    def __init__(self, setting: str) -> None:
        parts = [part.strip() for part in setting.split(",") if part.strip()]
        if not parts:
            raise SettingsError("secrets_key: empty; generate one with `remotegpu secrets generate-key`")
        fernets = []
        for position, part in enumerate(parts, start=1):
            try:
                fernets.append(Fernet(part))
            except ValueError:
                raise SettingsError(
                    f"secrets_key: key {position} of {len(parts)} is not a Fernet key (32 url-safe base64"
                    " bytes); generate one with `remotegpu secrets generate-key`"
                ) from None
        self.count = len(fernets)
        self.fernet = MultiFernet(fernets)

    def __repr__(self) -> str:
        return f"SecretKeys({self.count} key{'s' if self.count > 1 else ''})"


class EncryptedSecretStore:
    """`SecretStore` on the `secrets` table; each call is one short transaction of its own."""

    def __init__(self, engine: Engine, keys: SecretKeys) -> None:
        self._engine = engine
        self._keys = keys

    def __repr__(self) -> str:
        return f"EncryptedSecretStore({self._keys!r})"

    def put(self, path: SecretPath, value: SecretValue) -> None:
        data, is_text = encode_value(value)
        ciphertext = self._keys.fernet.encrypt(data)
        workspace_id = path.scope.workspace_id
        statement = insert(StoredSecret).values(
            workspace_id=workspace_id, name=path.name, ciphertext=ciphertext, is_text=is_text
        )
        if workspace_id is None:
            statement = statement.on_conflict_do_update(
                index_elements=[StoredSecret.name],
                index_where=StoredSecret.workspace_id.is_(None),
                set_={"ciphertext": ciphertext, "is_text": is_text, "updated_at": func.now()},
            )
        else:
            statement = statement.on_conflict_do_update(
                index_elements=[StoredSecret.workspace_id, StoredSecret.name],
                index_where=StoredSecret.workspace_id.is_not(None),
                set_={"ciphertext": ciphertext, "is_text": is_text, "updated_at": func.now()},
            )
        with self._engine.begin() as connection:
            connection.execute(statement)

    def get(self, path: SecretPath) -> SecretValue:
        with self._engine.begin() as connection:
            row = connection.execute(
                select(StoredSecret.ciphertext, StoredSecret.is_text).where(*_at(path))
            ).one_or_none()
        if row is None:
            raise SecretNotFoundError(path)
        return decode_value(self._decrypt(path, row.ciphertext), row.is_text)

    def delete(self, path: SecretPath) -> bool:
        with self._engine.begin() as connection:
            return connection.execute(delete(StoredSecret).where(*_at(path))).rowcount > 0

    def list(self, scope: SecretScope) -> list[str]:
        with self._engine.begin() as connection:
            names = connection.execute(
                select(StoredSecret.name).where(_in_scope(scope)).order_by(StoredSecret.name)
            ).scalars()
            return list(names)

    def _decrypt(self, path: SecretPath, ciphertext: bytes) -> bytes:
        try:
            return self._keys.fernet.decrypt(ciphertext)
        except InvalidToken:
            raise _undecryptable(path) from None


def rotate_secrets(engine: Engine, keys: SecretKeys) -> int:
    """Re-encrypt every stored secret with the first key; returns how many rows it rewrote.

    Safe to run while the platform serves: rows are rewritten in batches under row locks, and every key
    still decrypts in the meantime. Running it twice is harmless.
    """
    rotated = 0
    last: uuid.UUID | None = None
    while True:
        with engine.begin() as connection:
            query = select(
                StoredSecret.id, StoredSecret.workspace_id, StoredSecret.name, StoredSecret.ciphertext
            )
            if last is not None:
                query = query.where(StoredSecret.id > last)
            rows = connection.execute(
                query.order_by(StoredSecret.id).limit(_ROTATE_BATCH).with_for_update()
            ).all()
            for row in rows:
                try:
                    ciphertext = keys.fernet.rotate(row.ciphertext)
                except InvalidToken:
                    raise _undecryptable(SecretPath(SecretScope(row.workspace_id), row.name)) from None
                connection.execute(
                    update(StoredSecret).where(StoredSecret.id == row.id).values(ciphertext=ciphertext)
                )
        rotated += len(rows)
        if len(rows) < _ROTATE_BATCH:
            break
        last = rows[-1].id
    log.info("Secrets re-encrypted with the current key", extra={"secrets": rotated, "keys": keys.count})
    return rotated


def _at(path: SecretPath) -> tuple[ColumnElement[bool], ...]:
    return (_in_scope(path.scope), StoredSecret.name == path.name)


def _in_scope(scope: SecretScope) -> ColumnElement[bool]:
    if scope.workspace_id is None:
        return StoredSecret.workspace_id.is_(None)
    return StoredSecret.workspace_id == scope.workspace_id


def _undecryptable(path: SecretPath) -> SecretsUnavailableError:
    return SecretsUnavailableError(
        f"secret {path.name!r} in the {path.scope} scope cannot be decrypted with any key of secrets_key:"
        " put back the key it was written with (after the current one) and run `remotegpu secrets rotate`"
    )
