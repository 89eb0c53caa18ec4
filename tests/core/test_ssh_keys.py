"""SSH public keys: what is accepted, what is refused and how it is said, and who an environment trusts."""

from __future__ import annotations

import base64
import struct
import subprocess
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sqlalchemy import Engine, text

from remotegpu.core.accounts.ssh_keys import (
    add_ssh_key,
    authorized_keys_for,
    list_ssh_keys,
    parse_public_key,
    remove_ssh_key,
)
from remotegpu.core.platform.errors import ConflictError, InvalidInputError, NotFoundError
from remotegpu.tests.allocation_world import make_user, make_workspace


def _public_line(private: object, comment: str = "alice@laptop") -> str:
    public = private.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{public.decode()} {comment}"


def ed25519_line(comment: str = "alice@laptop") -> str:
    return _public_line(ed25519.Ed25519PrivateKey.generate(), comment)


def _wire(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(field)) + field for field in fields)


@pytest.mark.parametrize(
    ("private", "key_type"),
    [
        (ed25519.Ed25519PrivateKey.generate, "ssh-ed25519"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ecdsa-sha2-nistp256"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "ecdsa-sha2-nistp384"),
        (lambda: ec.generate_private_key(ec.SECP521R1()), "ecdsa-sha2-nistp521"),
        (lambda: rsa.generate_private_key(65537, 2048), "ssh-rsa"),
    ],
)
def test_each_supported_type_is_accepted_with_the_fingerprint_ssh_keygen_prints(
    private: object, key_type: str, tmp_path: Path
) -> None:
    line = _public_line(private())  # type: ignore[operator]
    key = parse_public_key(f"  {line}\n")
    assert (key.key_type, key.line, key.comment) == (key_type, line, "alice@laptop")
    (tmp_path / "key.pub").write_text(line)
    printed = subprocess.run(
        ["ssh-keygen", "-lf", str(tmp_path / "key.pub")], capture_output=True, text=True, check=True
    ).stdout
    assert printed.split()[1] == key.fingerprint


def test_security_key_types_are_accepted() -> None:
    point = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    blob = _wire(b"sk-ssh-ed25519@openssh.com", point, b"ssh:")
    line = f"sk-ssh-ed25519@openssh.com {base64.b64encode(blob).decode()} yubikey"
    assert parse_public_key(line).fingerprint.startswith("SHA256:")
    ec_point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    blob = _wire(b"sk-ecdsa-sha2-nistp256@openssh.com", b"nistp256", ec_point, b"ssh:")
    assert (
        parse_public_key(f"sk-ecdsa-sha2-nistp256@openssh.com {base64.b64encode(blob).decode()}").comment
        == ""
    )


def _refusal(pasted: str) -> str:
    with pytest.raises(InvalidInputError) as refused:
        parse_public_key(pasted)
    assert refused.value.field == "$.public_key"
    return str(refused.value)


def test_a_short_rsa_key_is_refused_naming_its_length() -> None:
    line = _public_line(rsa.generate_private_key(65537, 1024))
    assert "1024 bits; at least 2048" in _refusal(line)


def test_a_pasted_private_key_is_refused_without_echoing_it() -> None:
    private = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        .decode()
    )
    message = _refusal(private)
    assert "private key" in message
    assert ".pub" in message
    assert "not stored or logged" in message
    body = private.splitlines()[1]
    assert body not in message
    pem = (
        rsa.generate_private_key(65537, 2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        .decode()
    )
    assert "private key" in _refusal(pem)


@pytest.mark.parametrize(
    ("pasted", "says"),
    [
        ("hello world", "unsupported key type"),
        ("ssh-ed25519", "expected `TYPE BASE64"),
        ("ssh-ed25519 not*base64!", "does not decode"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "unsupported key type"),
        (f"ssh-ed25519 {base64.b64encode(b'garbage').decode()}", "truncated"),
        ("", "exactly one"),
        (f"{ed25519_line()}\n{ed25519_line()}", "exactly one"),
    ],
)
def test_garbage_is_refused_with_the_fix(pasted: str, says: str) -> None:
    assert says in _refusal(pasted)


def test_a_blob_of_another_type_is_refused() -> None:
    _, encoded, _ = ed25519_line().split()
    assert "blob names another type" in _refusal(f"ssh-rsa {encoded}")
    ec_key = _public_line(ec.generate_private_key(ec.SECP256R1())).split()[1]
    assert "blob names another type" in _refusal(f"ecdsa-sha2-nistp384 {ec_key}")


def test_keys_are_stored_per_user_listed_and_removed_by_id_or_fingerprint(db: Engine) -> None:
    line = ed25519_line()
    with db.begin() as connection:
        alice, bob = make_user(connection), make_user(connection)
        added = add_ssh_key(connection, alice, line)
        assert added.name == "alice@laptop"
        assert added.public_key == line
        with pytest.raises(ConflictError):
            add_ssh_key(connection, alice, line + " again")  # same key, another comment
        add_ssh_key(connection, bob, line, name="shared")  # another user may hold the same key
        second = add_ssh_key(connection, alice, ed25519_line("desktop"))
        assert [k.name for k in list_ssh_keys(connection, alice)] == ["alice@laptop", "desktop"]
        with pytest.raises(NotFoundError):
            remove_ssh_key(connection, bob, second.id)  # not theirs
        assert remove_ssh_key(connection, alice, added.fingerprint).id == added.id
        assert remove_ssh_key(connection, alice, second.id).id == second.id
        assert list_ssh_keys(connection, alice) == []


def _environment(connection: object, workspace: uuid.UUID, user: uuid.UUID) -> uuid.UUID:
    from remotegpu.core.environments.desired import submit_environment
    from remotegpu.tests.specs import environment_spec

    return submit_environment(
        connection,  # type: ignore[arg-type]
        workspace_id=workspace,
        user_id=user,
        spec=environment_spec("box", {"image": "ubuntu:24.04", "access": ["ssh"]}),
    )


def test_authorized_keys_are_the_owner_s_plus_admins_only_when_the_workspace_says_so(db: Engine) -> None:
    with db.begin() as connection:
        owner, member, admin, outsider = (make_user(connection) for _ in range(4))
        workspace = make_workspace(connection, owner)
        for user, role in ((owner, "owner"), (member, "member"), (admin, "admin")):
            connection.execute(
                text("INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (:w, :u, :r)"),
                {"w": workspace, "u": user, "r": role},
            )
        keys = {user: ed25519_line(str(user)) for user in (owner, member, admin, outsider)}
        for user, line in keys.items():
            add_ssh_key(connection, user, line)
        environment = _environment(connection, workspace, member)
        assert authorized_keys_for(connection, environment) == [keys[member]]
        connection.execute(
            text(
                "UPDATE workspaces SET settings = '{\"admin_keys_in_member_environments\": true}' WHERE id = :w"
            ),
            {"w": workspace},
        )
        assert sorted(authorized_keys_for(connection, environment)) == sorted(
            [keys[member], keys[admin], keys[owner]]
        )
        connection.execute(text("UPDATE users SET disabled = true WHERE id = :u"), {"u": admin})
        assert keys[admin] not in authorized_keys_for(connection, environment), "a disabled user's keys go"
