"""A realistic API and CLI session, then a search of everything it let out for the secrets it made.

Users register and sign in (passwords, access and refresh tokens), mint API tokens, an admin sets the
registry credentials (through the API and `remotegpu registry login`), secrets are written through the
store, an environment with SSH and Jupyter runs on the simulated cluster with the pull Secret (its
Jupyter token and platform key are made by the reconciler), and bad requests
carry secret-looking input. Every log record (DEBUG, every logger), every answer, the CLI's output and
every table row are then searched (see `tests/secret_scan.py`).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import uuid
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from typer.testing import CliRunner

from remotegpu.core.accounts.users import register_user
from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.environments.access_keys import platform_key_path
from remotegpu.core.environments.jupyter import jupyter_token_path
from remotegpu.core.environments.states import UserRole
from remotegpu.core.inventory.sync import sync_inventory
from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.builtin import EncryptedSecretStore, SecretKeys
from remotegpu.core.secrets.registry_credentials import CachedRegistryCredentials, docker_config_for
from remotegpu.core.secrets.store import SecretPath, SecretScope
from remotegpu.ops.cli.app import app
from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster
from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.api.conftest import SECRETS_KEY, spec
from remotegpu.tests.polling import poll_until
from remotegpu.tests.secret_scan import SecretScan, secret_scan

__all__ = ["secret_scan"]


def _cli(scan: SecretScan, api_url: str, home: Path, token: str, *args: str, stdin: str | None = None) -> str:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("REMOTEGPU_")}
    env |= {"XDG_CONFIG_HOME": str(home), "COLUMNS": "200", "REMOTEGPU_SERVER_URL": api_url}
    env |= {"REMOTEGPU_TOKEN": token}
    result = CliRunner().invoke(app, list(args), env=env, input=stdin)
    scan.output(f"cli {' '.join(args)}", result.output, result.exception)
    return result.output


def test_no_secret_value_leaves_through_logs_answers_output_or_rows(
    secret_scan: SecretScan,
    api_url: str,
    engine: Engine,
    database_url: URL,
    sessions: object,
    tmp_path: Path,
) -> None:
    scan = secret_scan
    base = f"{api_url}/api/v1"
    anonymous = scan.client(base)

    # Accounts: an admin, a user registering through the API, sign-ins, refresh, API tokens.
    admin_password = scan.secret("admin password", f"admin-pw-{uuid.uuid4().hex}")
    with engine.begin() as connection:
        register_user(
            connection,
            email="root@example.org",
            username="root",
            password=admin_password,
            role=UserRole.ADMIN,
        )
    alice_password = scan.secret("her password", f"her-pw-{uuid.uuid4().hex}")
    registered = anonymous.post(
        "/auth/register", json={"email": "alice@example.org", "username": "alice", "password": alice_password}
    )
    assert registered.status_code == 201, registered.text
    wrong = scan.secret("a mistyped password", f"mistyped-{uuid.uuid4().hex}")
    assert (
        anonymous.post("/auth/login", json={"email": "alice@example.org", "password": wrong}).status_code
        == 401
    )
    signed_in = anonymous.post("/auth/login", json={"email": "alice@example.org", "password": alice_password})
    assert signed_in.status_code == 200
    access = scan.secret("alice's access token", signed_in.json()["access_token"], shown_in=[signed_in])
    refresh_token = scan.secret(
        "alice's refresh token", signed_in.json()["refresh_token"], shown_in=[signed_in]
    )
    refreshed = anonymous.post("/auth/refresh", json={"refresh_token": refresh_token})
    assert refreshed.status_code == 200
    scan.secret("a refreshed access token", refreshed.json()["access_token"], shown_in=[refreshed])
    scan.secret("a refreshed refresh token", refreshed.json()["refresh_token"], shown_in=[refreshed])
    alice = scan.client(base, access)
    minted = alice.post("/auth/tokens", json={"name": "laptop"})
    assert minted.status_code == 201, minted.text
    alice_token = scan.secret("alice's API token", minted.json()["token"], shown_in=[minted])
    assert alice.get("/auth/tokens").status_code == 200
    admin_login = anonymous.post(
        "/auth/login", json={"email": "root@example.org", "password": admin_password}
    )
    admin_access = scan.secret(
        "the admin's access token", admin_login.json()["access_token"], shown_in=[admin_login]
    )
    scan.secret("the admin's refresh token", admin_login.json()["refresh_token"], shown_in=[admin_login])
    admin = scan.client(base, admin_access)
    admin_minted = admin.post("/auth/tokens", json={"name": "ops"})
    admin_token = scan.secret("the admin's API token", admin_minted.json()["token"], shown_in=[admin_minted])

    # Bad requests carrying secrets: each is refused without repeating the value.
    short = scan.secret("a too-short password", "Sh0rt!pw")
    for body in (
        {"email": "bob@example.org", "username": "bob", "password": short},
        {"email": "not-an-address", "username": "bob", "password": f"bob-pw-{uuid.uuid4().hex}"},
        {
            "email": "bob@example.org",
            "username": "bob",
            "password": f"bob-pw-{uuid.uuid4().hex}",
            "pasword": "x",
        },
        {"email": "bob@example.org", "username": "b o b", "password": f"bob-pw-{uuid.uuid4().hex}"},
    ):
        scan.secret("bob's password", str(body["password"]))
        assert anonymous.post("/auth/register", json=body).status_code == 422
    unsent = scan.secret("a password in a body that is not JSON", f"not-json-{uuid.uuid4().hex}")
    not_json = anonymous.post(
        "/auth/login",
        content=f'{{"email": "alice@example.org", "password": "{unsent}"',
        headers={"content-type": "application/json"},
    )
    assert not_json.status_code == 400

    # Registry credentials: the API, refusals, and the CLI.
    registry_password = scan.secret("the registry password", f"registry-pw-{uuid.uuid4().hex}")
    config = docker_config_for("harbor.example.org", "robot", registry_password)
    scan.secret("the registry auth", config["auths"]["harbor.example.org"]["auth"])
    assert admin.put("/registry-credentials", json=config).status_code == 204
    assert admin.get("/registry-credentials").json() == {"registries": ["harbor.example.org"]}
    assert alice.put("/registry-credentials", json=config).status_code == 403
    bad_password = scan.secret("a registry password in a bad body", f"bad-registry-pw-{uuid.uuid4().hex}")
    for bad in (
        {"auths": {"harbor.example.org": {"password": bad_password}}},
        {"auths": {"harbor.example.org": {"auth": bad_password}}},
        {"auths": {"harbor.example.org": {"auth": 5, "password": bad_password}}},
        {"auths": bad_password},
        {"auth": {"harbor.example.org": {"username": "robot", "password": bad_password}}},
    ):
        refused = admin.put("/registry-credentials", json=bad)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"].startswith("$")
    cli_password = scan.secret("a registry password given to the CLI", f"cli-registry-pw-{uuid.uuid4().hex}")
    printed = _cli(
        scan,
        api_url,
        tmp_path / "admin",
        admin_token,
        "registry",
        "login",
        "ghcr.io",
        "--username",
        "bot",
        "--password-stdin",
        stdin=cli_password + "\n",
    )
    assert "ghcr.io" in printed
    assert "ghcr.io" in _cli(scan, api_url, tmp_path / "admin", admin_token, "registry", "list")

    # Secrets written straight through the store (as the reconciler and later features do).
    store = EncryptedSecretStore(engine, SecretKeys(SECRETS_KEY))
    workspace = alice.post("/workspaces", json={"name": "lab"})
    assert workspace.status_code == 201, workspace.text
    stored = scan.secret("a stored workspace secret", f"stored-value-{uuid.uuid4().hex}")
    store.put(SecretPath(SecretScope.workspace(uuid.UUID(workspace.json()["id"])), "db-password"), stored)
    assert (
        store.get(SecretPath(SecretScope.workspace(uuid.UUID(workspace.json()["id"])), "db-password"))
        == stored
    )

    # Environments: through the API and the CLI, run on the simulated cluster with the pull Secret.
    created = alice.post(
        "/environments",
        json=spec("train", "lab", image="harbor.example.org/ml/train:1", access=["ssh", "jupyter"]),
    )
    assert created.status_code == 201, created.text
    environment = created.json()["environment"]["id"]
    assert "train" in _cli(scan, api_url, tmp_path / "alice", alice_token, "get", "envs", "-w", "lab")
    with SimulatedCluster(NodeTemplate(count=1, gpus=8, model="H100"), start_delay=dt.timedelta(0)) as sim:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        driver = KubernetesCluster.from_kubeconfig(
            str(kubeconfig), registry_credentials=CachedRegistryCredentials(store, ttl_seconds=0)
        )
        with engine.begin() as connection:
            sync_inventory(connection, driver.list_nodes())
        reconciler = Reconciler(
            database_url, driver, Settings(), identity="scan", listen=False, secrets=store
        )
        try:

            def running() -> str:
                reconciler.run_until_idle()
                return str(alice.get(f"/environments/{environment}").json()["phase"])

            poll_until(running, 20, "the environment running", until=lambda phase: phase == "running")
        finally:
            reconciler.close()
        workspace_id, environment_id = uuid.UUID(workspace.json()["id"]), uuid.UUID(environment)
        # The environment's own secrets: its Jupyter token (shown to its owner only, in the access answer)
        # and the private half of its platform SSH key (shown to nobody).
        access_answer = alice.get(f"/environments/{environment}/access")
        assert access_answer.status_code == 200
        token = str(store.get(jupyter_token_path(workspace_id, environment_id)))
        scan.secret("the environment's Jupyter token", token, shown_in=[access_answer])
        assert token in access_answer.text, "its owner sees the token"
        scan.secret(
            "the platform private key", str(store.get(platform_key_path(workspace_id, environment_id)))
        )
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM events")).scalar_one() > 0

    scan.database(engine)
    assert len(scan.secrets) > 15, "the session made its secrets"
    assert len(scan.seen) > 50, "the session ran"
    assert scan.leaks() == []


def test_the_scan_finds_a_secret_in_a_debug_record_an_extra_field_or_a_second_answer(
    secret_scan: SecretScan,
    api_url: str,
    sessions: object,
) -> None:
    """The scan itself: a value is found at DEBUG, in an extra field, base64-encoded, and in an answer
    other than the one allowed to show it."""
    scan = secret_scan
    anonymous = scan.client(f"{api_url}/api/v1")
    first = anonymous.get("/schemas/environment.json")
    second = anonymous.get("/schemas/environment.json")
    shown = scan.secret("a value the schema shows", '"$schema"', shown_in=[first])
    logged = scan.secret("a logged value", f"logged-{uuid.uuid4().hex}")
    extra = scan.secret("a value in an extra field", f"extra-{uuid.uuid4().hex}")
    encoded = scan.secret("an encoded value", f"encoded-{uuid.uuid4().hex}")
    logging.getLogger("remotegpu.somewhere").debug("Did something with %s", logged)
    logging.getLogger("uvicorn.error").info("Done", extra={"value": extra})
    logging.getLogger("remotegpu.elsewhere").warning(base64.b64encode(encoded.encode()).decode())
    assert second.status_code == 200
    assert shown
    assert sorted(scan.leaks()) == [
        "a logged value in log remotegpu.somewhere:DEBUG",
        "a value in an extra field in log uvicorn.error:INFO",
        "a value the schema shows in answer GET /api/v1/schemas/environment.json 200",
        "an encoded value in log remotegpu.elsewhere:WARNING",
    ]
