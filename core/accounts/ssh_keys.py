"""Users' SSH public keys: validating what a user pastes, keeping it, and which keys an environment trusts.

A key is accepted only as an OpenSSH public key line (`type base64 [comment]`, what `~/.ssh/*.pub`
holds): the type must be one we trust (ed25519, ECDSA on the NIST curves, RSA of at least 2048 bits,
and the FIDO `sk-` variants), the base64 must decode, and the type written inside the blob must match
the one in front of it. RSA's length is read from the blob's modulus. A private key pasted by mistake is
refused with a message that says so — and neither it nor any part of it is stored, logged or echoed.

`AUTHORIZED_KEYS_SQL` is the one definition of who may log in to an environment: its owner's keys, plus
its workspace's admins' and owners' keys when the workspace's `admin_keys_in_member_environments`
setting is on; keys of disabled users never. The reconciler reads it inside the statement that loads a
step's row, and `authorized_keys_for` runs the same fragment on its own.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import struct
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from remotegpu.core.platform.errors import ConflictError, InvalidInputError, NotFoundError
from remotegpu.core.platform.events import record_mutation

MIN_RSA_BITS = 2048
ECDSA_CURVES = {
    "ecdsa-sha2-nistp256": b"nistp256",
    "ecdsa-sha2-nistp384": b"nistp384",
    "ecdsa-sha2-nistp521": b"nistp521",
}
SK_TYPES = {"sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"}
KEY_TYPES = frozenset({"ssh-ed25519", "ssh-rsa", *ECDSA_CURVES, *SK_TYPES})
_PRIVATE_MARKERS = ("PRIVATE KEY", "PuTTY-User-Key-File", "SSH2 ENCRYPTED PRIVATE KEY")
_MAX_NAME = 200


@dataclass(frozen=True)
class PublicKey:
    """A validated OpenSSH public key."""

    key_type: str
    blob: bytes
    comment: str

    @property
    def line(self) -> str:
        """`type base64 [comment]`: the `authorized_keys` line."""
        encoded = base64.b64encode(self.blob).decode()
        return f"{self.key_type} {encoded} {self.comment}".rstrip()

    @property
    def fingerprint(self) -> str:
        """`SHA256:…`, as `ssh-keygen -lf` prints it."""
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"


def parse_public_key(pasted: str, field: str = "$.public_key") -> PublicKey:
    """Validate an OpenSSH public key line; InvalidInputError naming `field` and the fix otherwise.

    Messages never quote what was pasted: a private key must not travel back in an error either."""
    if any(marker in pasted for marker in _PRIVATE_MARKERS):
        raise InvalidInputError(
            field,
            "this is a private key; paste the public key instead (the .pub file, e.g. ~/.ssh/id_ed25519.pub)."
            " The private key was not stored or logged, but treat it as exposed if you pasted it somewhere"
            " shared",
        )
    lines = [line for line in pasted.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        raise InvalidInputError(
            field,
            "expected exactly one OpenSSH public key line (`ssh-ed25519 AAAA… comment`); add keys one by one",
        )
    parts = lines[0].split(None, 2)
    if len(parts) < 2:
        raise InvalidInputError(field, "not an OpenSSH public key: expected `TYPE BASE64 [COMMENT]`")
    key_type, encoded = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) == 3 else ""
    if key_type not in KEY_TYPES:
        raise InvalidInputError(
            field,
            f"unsupported key type {key_type[:40]!r}; use one of {', '.join(sorted(KEY_TYPES))}"
            " (e.g. `ssh-keygen -t ed25519`)",
        )
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(
            field, "the key's base64 part does not decode; copy the whole .pub line"
        ) from None
    fields = _blob_fields(blob, field)
    if not fields or fields[0] != key_type.encode():
        raise InvalidInputError(field, f"the key data is not a {key_type} key (its blob names another type)")
    _check_key_material(key_type, fields, field)
    if key_type not in SK_TYPES:  # cryptography has no sk- types; for the others it checks the maths too
        try:
            serialization.load_ssh_public_key(f"{key_type} {encoded}".encode())
        except (ValueError, UnsupportedAlgorithm):
            raise InvalidInputError(
                field, f"malformed {key_type} key data (not a valid public key)"
            ) from None
    return PublicKey(key_type, blob, comment[:_MAX_NAME])


def _blob_fields(blob: bytes, field: str) -> list[bytes]:
    """The SSH wire-format strings of a public key blob (RFC 4253 §6.6)."""
    fields: list[bytes] = []
    offset = 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise InvalidInputError(field, "the key data is truncated; copy the whole .pub line")
        (length,) = struct.unpack_from(">I", blob, offset)
        offset += 4
        if offset + length > len(blob):
            raise InvalidInputError(field, "the key data is truncated; copy the whole .pub line")
        fields.append(blob[offset : offset + length])
        offset += length
    return fields


def _check_key_material(key_type: str, fields: list[bytes], field: str) -> None:
    """Each type's own checks: sizes, curve names, RSA length."""
    if key_type == "ssh-rsa":
        if len(fields) != 3:
            raise InvalidInputError(field, "malformed ssh-rsa key data")
        bits = int.from_bytes(fields[2], "big").bit_length()
        if bits < MIN_RSA_BITS:
            raise InvalidInputError(
                field,
                f"this RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
                " (better: `ssh-keygen -t ed25519`)",
            )
    elif key_type in {"ssh-ed25519", "sk-ssh-ed25519@openssh.com"}:
        expected = 2 if key_type == "ssh-ed25519" else 3
        if len(fields) != expected or len(fields[1]) != 32:
            raise InvalidInputError(field, f"malformed {key_type} key data")
    else:
        curve = ECDSA_CURVES.get(key_type, b"nistp256")
        expected = 3 if key_type in ECDSA_CURVES else 4
        if len(fields) != expected or fields[1] != curve or not fields[2].startswith(b"\x04"):
            raise InvalidInputError(field, f"malformed {key_type} key data")


# -- stored keys ----------------------------------------------------------------------------------

_COLUMNS = "id, name, key_type, public_key, fingerprint, created_at"


@dataclass(frozen=True)
class SshKeyRow:
    """A stored key as its owner sees it."""

    id: uuid.UUID
    name: str
    key_type: str
    public_key: str
    fingerprint: str
    created_at: dt.datetime


def _row(row: Any) -> SshKeyRow:
    return SshKeyRow(row.id, row.name, row.key_type, row.public_key, row.fingerprint, row.created_at)


def add_ssh_key(
    connection: Connection, user_id: uuid.UUID, pasted: str, name: str | None = None
) -> SshKeyRow:
    """Store a validated key of `user_id`; ConflictError if they already have it. The running
    environments it unlocks get it at their next resync."""
    key = parse_public_key(pasted)
    label = (name or key.comment or key.fingerprint)[:_MAX_NAME]
    try:
        with connection.begin_nested():
            row = connection.execute(
                text(
                    f"INSERT INTO ssh_keys (user_id, name, key_type, public_key, fingerprint, created_at)"
                    f" VALUES (:user, :name, :type, :line, :fingerprint, clock_timestamp()) RETURNING {_COLUMNS}"
                ),
                {
                    "user": user_id,
                    "name": label,
                    "type": key.key_type,
                    "line": key.line,
                    "fingerprint": key.fingerprint,
                },
            ).one()
    except IntegrityError:
        raise ConflictError(f"you already added this key ({key.fingerprint})", "$.public_key") from None
    record_mutation(
        connection,
        user_id,
        "SshKeyAdded",
        f"SSH key {key.fingerprint} added",
        data={"fingerprint": key.fingerprint},
    )
    return _row(row)


def list_ssh_keys(connection: Connection, user_id: uuid.UUID) -> list[SshKeyRow]:
    """The user's keys, oldest first."""
    rows = connection.execute(
        text(f"SELECT {_COLUMNS} FROM ssh_keys WHERE user_id = :user ORDER BY created_at, id"),
        {"user": user_id},
    ).all()
    return [_row(row) for row in rows]


def remove_ssh_key(connection: Connection, user_id: uuid.UUID, reference: uuid.UUID | str) -> SshKeyRow:
    """Delete one of the user's keys, by id or fingerprint; NotFoundError when they have no such key
    (another user's key reads as absent). Running environments lose it at their next resync."""
    by_id = reference if isinstance(reference, uuid.UUID) else None
    fingerprint = None if by_id else str(reference)
    row = connection.execute(
        text(
            f"DELETE FROM ssh_keys WHERE user_id = :user AND (id = :id OR fingerprint = :fingerprint)"
            f" RETURNING {_COLUMNS}"
        ),
        {"user": user_id, "id": by_id, "fingerprint": fingerprint},
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"you have no SSH key {reference}")
    record_mutation(
        connection,
        user_id,
        "SshKeyRemoved",
        f"SSH key {row.fingerprint} removed",
        data={"fingerprint": row.fingerprint},
    )
    return _row(row)


# -- who may log in to an environment -------------------------------------------------------------

AUTHORIZED_KEYS_SQL = """
    CASE WHEN e.spec -> 'access' @> CAST('["ssh"]' AS jsonb) THEN
    coalesce((SELECT json_agg(DISTINCT k.public_key ORDER BY k.public_key)
                FROM ssh_keys k JOIN users u ON u.id = k.user_id AND NOT u.disabled
               WHERE k.user_id = e.user_id
                  OR (k.user_id IN (SELECT m.user_id FROM workspace_members m
                                     WHERE m.workspace_id = e.workspace_id AND m.role IN ('admin', 'owner'))
                      AND EXISTS (SELECT 1 FROM workspaces w WHERE w.id = e.workspace_id
                                     AND (w.settings ->> 'admin_keys_in_member_environments') = 'true'))),
             '[]')
    ELSE CAST('[]' AS json) END
"""
"""A JSON array of the `authorized_keys` lines of environment `e` (sorted, so equal sets compare equal);
empty, and not even looked up, when the environment has no SSH access (most steps pay nothing)."""


def authorized_keys_for(connection: Connection, environment_id: uuid.UUID) -> list[str]:
    """The public key lines entitled to log in to the environment (without its platform key); none when it
    has no SSH access."""
    found = connection.execute(
        text(f"SELECT {AUTHORIZED_KEYS_SQL} AS keys FROM environments e WHERE e.id = :id"),
        {"id": environment_id},
    ).scalar_one_or_none()
    return list(found or [])
