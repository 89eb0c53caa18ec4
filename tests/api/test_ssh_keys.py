"""SSH keys and workspace settings over HTTP and through the CLI: the round trip, refusals, permissions,
and a pasted private key that appears in no answer and no log line."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from typer.testing import CliRunner, Result

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.ops.cli.app import app
from remotegpu.tests.api.conftest import Caller
from remotegpu.tests.core.test_ssh_keys import ed25519_line

KEYS = "/users/me/ssh-keys"


def test_keys_round_trip_with_fingerprints_and_duplicates_are_409(new_user: Callable[[str], Caller]) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    line = ed25519_line()
    added = alice.post(KEYS, json={"public_key": line + "\n"})
    assert added.status_code == 201, added.text
    body = added.json()
    assert (body["name"], body["type"], body["public_key"]) == ("alice@laptop", "ssh-ed25519", line)
    assert body["fingerprint"].startswith("SHA256:")
    duplicate = alice.post(KEYS, json={"public_key": line, "name": "again"})
    assert duplicate.status_code == 409
    assert duplicate.json()["errors"][0]["field"] == "$.public_key"
    assert [k["fingerprint"] for k in alice.get(KEYS).json()] == [body["fingerprint"]]
    assert bob.get(KEYS).json() == []
    assert bob.delete(f"{KEYS}/{body['id']}").status_code == 404, "another user's key reads as absent"
    assert alice.delete(f"{KEYS}/{body['id']}").status_code == 200
    assert alice.get(KEYS).json() == []


def test_bad_keys_are_422_naming_the_field_and_the_fix(new_user: Callable[[str], Caller]) -> None:
    alice = new_user("alice")
    short = (
        rsa.generate_private_key(65537, 1024)
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    for pasted, says in ((short.decode(), "at least 2048"), ("nonsense", "expected `TYPE BASE64")):
        refused = alice.post(KEYS, json={"public_key": pasted})
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == "$.public_key"
        assert says in refused.text


def test_a_pasted_private_key_is_in_no_answer_and_no_log(
    new_user: Callable[[str], Caller], caplog: pytest.LogCaptureFixture
) -> None:
    alice = new_user("alice")
    private = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        .decode()
    )
    secret_part = private.splitlines()[1]
    with caplog.at_level(logging.DEBUG):
        refused = alice.post(KEYS, json={"public_key": private})
        listed = alice.get(KEYS)
    assert refused.status_code == 422
    assert "paste the public key instead" in refused.json()["detail"]
    assert secret_part not in refused.text
    assert secret_part not in listed.text
    assert secret_part not in caplog.text
    assert listed.json() == []


def test_settings_members_read_admins_change_outsiders_see_nothing(new_user: Callable[[str], Caller]) -> None:
    owner, admin, member, outsider = (new_user(name) for name in ("olga", "adam", "mia", "otto"))
    ws = owner.post("/workspaces", json={"name": "research"}).json()["id"]
    owner.post(f"/workspaces/{ws}/members", json={"user": "adam", "role": "admin"})
    owner.post(f"/workspaces/{ws}/members", json={"user": "mia"})
    path = f"/workspaces/{ws}/settings"
    defaults = {
        "admin_keys_in_member_environments": False,
        "gateway": None,
        "default_idle_stop_minutes": None,
        "spending_limit": None,
        "home_volume_size": None,
    }
    assert member.get(path).json() == defaults
    assert outsider.get(path).status_code == 404
    assert outsider.put(path, json={"admin_keys_in_member_environments": True}).status_code == 404
    assert member.put(path, json={"admin_keys_in_member_environments": True}).status_code == 403
    changed = admin.put(path, json={"admin_keys_in_member_environments": True})
    assert changed.status_code == 200, changed.text
    assert changed.json()["admin_keys_in_member_environments"] is True
    later = owner.put(path, json={"default_idle_stop_minutes": 30, "spending_limit": "250.00"}).json()
    assert later == {
        "admin_keys_in_member_environments": True,
        "gateway": None,
        "default_idle_stop_minutes": 30,
        "spending_limit": "250.00",
        "home_volume_size": None,
    }, "fields not given keep their value"
    odd_amounts = ("lots", "1e400", "1E+3", "\u0661\u0662", "-5", "0.001", "1" * 13)
    for amount in odd_amounts:  # an exponent, a sign, other scripts' digits, too precise, too large
        refused = owner.put(path, json={"spending_limit": amount})
        assert refused.status_code == 422, amount
        assert "spending_limit" in refused.text
    assert owner.put(path, json={"spending_limit": "0"}).json()["spending_limit"] == "0"
    for bad, field in (({"spending_limit": "lots"}, "spending_limit"), ({"colour": 1}, "colour")):
        refused = owner.put(path, json=bad)
        assert refused.status_code == 422
        assert field in refused.text


def _cli(api_url: str, tmp_path: Path, caller: Caller) -> Callable[..., Result]:
    token = caller.post("/auth/tokens", json={"name": "cli-test"}).json()["token"]
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("REMOTEGPU_")}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "COLUMNS": "200"}
    env |= {"REMOTEGPU_SERVER_URL": api_url, "REMOTEGPU_TOKEN": token}
    return lambda *args: CliRunner().invoke(app, list(args), env=env)


def test_cli_adds_lists_and_removes_keys_and_changes_settings(
    api_url: str, tmp_path: Path, new_user: Callable[[str], Caller]
) -> None:
    alice = new_user("alice")
    run = _cli(api_url, tmp_path, alice)
    public = tmp_path / "id_ed25519.pub"
    public.write_text(ed25519_line("alice@cli") + "\n")
    added = run("ssh-keys", "add", str(public))
    assert added.exit_code == 0, added.output
    fingerprint = alice.get(KEYS).json()[0]["fingerprint"]
    assert added.stdout.strip() == f"ssh-key/alice@cli added ({fingerprint})"
    listed = run("ssh-keys", "list")
    assert fingerprint in listed.stdout
    assert "alice@cli" in listed.stdout

    private = tmp_path / "id_ed25519"
    private.write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    refused = run("ssh-keys", "add", str(private))
    assert refused.exit_code == 1
    assert isinstance(refused.exception, RemoteGPUError)
    assert "private key" in str(refused.exception)
    assert "Nothing was sent" in str(refused.exception)

    removed = run("ssh-keys", "remove", fingerprint)
    assert removed.exit_code == 0, removed.output
    assert alice.get(KEYS).json() == []
    missing = run("ssh-keys", "remove", fingerprint)
    assert missing.exit_code == 1
    assert "no SSH key" in str(missing.exception)

    assert run("workspaces", "create", "research").exit_code == 0
    shown = run("workspaces", "settings")
    assert "admin_keys_in_member_environments" in shown.stdout
    assert "False" in shown.stdout
    turned_on = run("workspaces", "settings", "--admin-keys", "-o", "json")
    assert turned_on.exit_code == 0, turned_on.output
    assert '"admin_keys_in_member_environments": true' in turned_on.stdout
