"""Every route × every role: who gets through, who is refused (403), and who is not even told the thing
exists (404). The route list is checked against the app's OpenAPI document, so a new route without a
row here fails the suite.

Each (route, role) pair runs against a world of its own (fresh workspace, environments, image,
invoice), so one role's successful DELETE cannot change what the next role sees.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, Engine, text

from remotegpu.core.accounts.credentials import hash_password, issue_token
from remotegpu.core.accounts.users import create_api_token
from remotegpu.core.environments.desired import submit_environment
from remotegpu.tests.allocation_world import make_host
from remotegpu.tests.api.conftest import JWT_SECRET
from remotegpu.tests.core.test_ssh_keys import ed25519_line
from remotegpu.tests.specs import environment_spec

ROLES = ["anonymous", "outsider", "viewer", "member", "admin", "owner", "platform"]
_HASH = hash_password("irrelevant password")
_names = itertools.count(1)


@dataclass
class World:
    """One workspace with a member of every role, and things to act on."""

    users: dict[str, uuid.UUID]
    workspace: uuid.UUID
    members_env: uuid.UUID
    owners_env: uuid.UUID
    image: uuid.UUID
    invoice: uuid.UUID
    host: uuid.UUID
    gpu: uuid.UUID
    tokens: dict[str, uuid.UUID]
    spare: uuid.UUID
    """A user outside the workspace, for add-member and disable."""
    viewer_extra: uuid.UUID
    """A second viewer, for remove-member."""
    dataset: uuid.UUID
    """A volume dataset the member created."""


def _user(connection: Connection, role: str = "user") -> uuid.UUID:
    name = f"u{next(_names)}"
    return uuid.UUID(
        str(
            connection.execute(
                text(
                    "INSERT INTO users (email, username, password_hash, role) VALUES (:e, :n, :h, :r) RETURNING id"
                ),
                {"e": f"{name}@example.org", "n": name, "h": _HASH, "r": role},
            ).scalar_one()
        )
    )


def build_world(engine: Engine) -> World:
    with engine.begin() as connection:
        users = {role: _user(connection) for role in ROLES if role not in ("anonymous", "platform")}
        users["platform"] = _user(connection, "admin")
        workspace = connection.execute(
            text("INSERT INTO workspaces (name, owner_id) VALUES (:n, :o) RETURNING id"),
            {"n": f"ws{next(_names)}", "o": users["owner"]},
        ).scalar_one()
        viewer_extra = _user(connection)
        connection.execute(
            text(
                "INSERT INTO registries (name, kind, url, host) VALUES"
                " ('lab-registry', 'oci', 'https://registry.lab.example.org', 'registry.lab.example.org')"
                " ON CONFLICT (name) DO NOTHING"
            )
        )
        for role in ("viewer", "member", "admin", "owner"):
            connection.execute(
                text("INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (:w, :u, :r)"),
                {"w": workspace, "u": users[role], "r": role},
            )
        connection.execute(
            text("INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (:w, :u, 'viewer')"),
            {"w": workspace, "u": viewer_extra},
        )
        spec = {"image": "nvcr.io/nvidia/pytorch:24.05-py3", "resources": {"gpus": {"count": 1}}}
        members_env = submit_environment(
            connection,
            workspace_id=workspace,
            user_id=users["member"],
            spec=environment_spec("members-env", spec),
        )
        owners_env = submit_environment(
            connection,
            workspace_id=workspace,
            user_id=users["owner"],
            spec=environment_spec("owners-env", spec),
        )
        image = connection.execute(
            text(
                "INSERT INTO images (name, registry_host, repository, tag, visibility, owner_workspace_id)"
                " VALUES ('private', 'registry.example.org', :repo, '1', 'private', :w) RETURNING id"
            ),
            {"repo": f"team/img{next(_names)}", "w": workspace},
        ).scalar_one()
        start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
        invoice = connection.execute(
            text(
                "INSERT INTO invoices (workspace_id, period_start, period_end, currency)"
                " VALUES (:w, :s, :e, 'EUR') RETURNING id"
            ),
            {"w": workspace, "s": start, "e": start + dt.timedelta(days=30)},
        ).scalar_one()
        host = make_host(connection, gpus=1, name=f"node-{next(_names)}")
        gpu = connection.execute(text("SELECT id FROM gpus WHERE host_id = :h"), {"h": host}).scalar_one()
        tokens = {role: create_api_token(connection, user, "cli", None).id for role, user in users.items()}
        spare = _user(connection)
        dataset = connection.execute(
            text(
                "INSERT INTO datasets (workspace_id, name, created_by, source, volume, size_bytes, status)"
                " VALUES (:w, 'members-data', :u, 'volume', 'lab-data', 1, 'ready') RETURNING id"
            ),
            {"w": workspace, "u": users["member"]},
        ).scalar_one()
    return World(
        users,
        workspace,
        members_env,
        owners_env,
        image,
        invoice,
        host,
        gpu,
        tokens,
        spare,
        viewer_extra,
        dataset,
    )


@dataclass(frozen=True)
class Route:
    """A route, how to call it, and who may: `min_role` in the workspace, or a kind of its own."""

    method: str
    path: str
    access: str
    """`public`; `signed-in` (any user); `platform` (platform admins); `self` (the target user or a
    platform admin); or a workspace role (viewer, member, admin, owner)."""
    body: Callable[[World, str], Any] | None = None
    ok: int | None = None
    """The status of success when it is not simply 2xx (logs without a cluster, for example)."""


def _env_spec(world: World, role: str) -> dict[str, Any]:
    return {"name": f"new-{role}", "image": "nvcr.io/nvidia/pytorch:24.05-py3", "workspace": _ws_name(world)}


_WS_NAMES: dict[uuid.UUID, str] = {}


def _ws_name(world: World) -> str:
    return _WS_NAMES[world.workspace]


def _member_spec(world: World, role: str) -> dict[str, Any]:
    return {"name": "members-env", "image": "nvcr.io/nvidia/pytorch:24.05-py3", "command": ["true"]}


ROUTES = [
    Route(
        "POST",
        "/auth/register",
        "public",
        lambda w, r: {
            "email": f"{r}-{uuid.uuid4().hex[:6]}@x.org",
            "username": f"n{uuid.uuid4().hex[:8]}",
            "password": "long enough password",
        },
    ),
    Route(
        "POST", "/auth/login", "public", lambda w, r: {"email": "nobody@example.org", "password": "x"}, ok=401
    ),
    Route("POST", "/auth/refresh", "public", lambda w, r: {"refresh_token": "x"}, ok=401),
    Route(
        "POST", "/auth/reset", "public", lambda w, r: {"reset_token": "x", "new_password": "y" * 12}, ok=422
    ),
    Route("POST", "/auth/tokens", "signed-in", lambda w, r: {"name": "ci"}),
    Route("GET", "/auth/tokens", "signed-in"),
    Route("DELETE", "/auth/tokens/{token}", "signed-in"),
    Route("GET", "/users/me", "signed-in"),
    Route("PATCH", "/users/me", "signed-in", lambda w, r: {"display_name": f"{r} at work"}),
    # the wrong current password: refused (422) only once signed in
    Route(
        "PUT",
        "/users/me/password",
        "signed-in",
        lambda w, r: {"old_password": "not it at all", "new_password": "purple elephants dance"},
        ok=422,
    ),
    Route("GET", "/users/me/ssh-keys", "signed-in"),
    Route("POST", "/users/me/ssh-keys", "signed-in", lambda w, r: {"public_key": ed25519_line(r)}),
    Route("DELETE", "/users/me/ssh-keys/{ssh_key}", "signed-in", ok=404),  # nobody's key: 404 once signed in
    Route(
        "POST",
        "/datasets",
        "member",
        lambda w, r: {
            "name": f"d-{r}",
            "workspace": _ws_name(w),
            "source": "volume",
            "volume": "v",
            "size_bytes": 1,
        },
    ),
    Route("GET", "/datasets?workspace={workspace}", "viewer"),
    Route("GET", "/datasets/{dataset}", "viewer"),
    Route("DELETE", "/datasets/{dataset}", "member"),
    # a volume dataset takes no uploads: those who may upload are told so (409), the others are refused first
    Route("PUT", "/datasets/{dataset}/content", "member", ok=409),
    Route("POST", "/datasets/{dataset}/parts", "member", lambda w, r: {}, ok=409),
    Route("POST", "/datasets/{dataset}/complete", "member", lambda w, r: {}, ok=409),
    Route("POST", "/datasets/{dataset}/retry", "member", ok=409),
    Route("GET", "/users", "platform"),
    Route("POST", "/users/{spare}/disable", "platform"),
    Route("POST", "/users/{spare}/enable", "platform"),
    Route("POST", "/users/{spare}/password-reset", "platform"),
    Route("POST", "/workspaces", "signed-in", lambda w, r: {"name": f"made-by-{r}-{uuid.uuid4().hex[:6]}"}),
    Route("GET", "/workspaces", "signed-in"),
    Route("GET", "/workspaces/{workspace}", "viewer"),
    Route("PUT", "/workspaces/{workspace}", "admin", lambda w, r: {"display_name": "renamed"}),
    Route("DELETE", "/workspaces/{workspace}", "owner"),
    Route("GET", "/workspaces/{workspace}/members", "viewer"),
    Route("GET", "/workspaces/{workspace}/settings", "viewer"),
    Route(
        "PUT",
        "/workspaces/{workspace}/settings",
        "admin",
        lambda w, r: {"admin_keys_in_member_environments": True},
    ),
    Route(
        "POST",
        "/workspaces/{workspace}/members",
        "admin",
        lambda w, r: {"user": str(w.spare), "role": "member"},
    ),
    Route("PATCH", "/workspaces/{workspace}/members/{member}", "admin", lambda w, r: {"role": "viewer"}),
    Route("DELETE", "/workspaces/{workspace}/members/{viewer_extra}", "admin"),
    Route("GET", "/quotas/{member}", "self"),
    Route("GET", "/quotas/{member}/usage", "self"),
    Route("PUT", "/quotas/{member}", "platform", lambda w, r: {"gpus": 4}),
    Route("GET", "/quotas/workspaces/{workspace}", "viewer"),
    Route("GET", "/quotas/workspaces/{workspace}/usage", "viewer"),
    Route("PUT", "/quotas/workspaces/{workspace}", "platform", lambda w, r: {"gpus": 8, "memory": "1Ti"}),
    Route("GET", "/hosts", "platform"),
    Route("GET", "/hosts/{host}", "platform"),
    Route("PUT", "/hosts/{host}", "platform", lambda w, r: {"public_address": "gpu0.lab.example.org"}),
    Route("GET", "/hosts/{host}/gpus", "platform"),
    Route("POST", "/hosts/{host}/cordon", "platform", lambda w, r: {"reason": "maintenance"}),
    Route("POST", "/hosts/{host}/uncordon", "platform"),
    Route("POST", "/hosts/{host}/drain", "platform", lambda w, r: {}),
    Route("GET", "/gpus", "platform"),
    Route("POST", "/gpus/{gpu}/health", "platform", lambda w, r: {"health": "unhealthy", "reason": "XID 79"}),
    Route("POST", "/environments", "member", _env_spec),
    Route("POST", "/environments/apply", "member", _env_spec),
    Route("GET", "/environments", "signed-in"),
    Route("GET", "/environments/{members_env}", "viewer"),
    Route("PUT", "/environments/{members_env}", "member", _member_spec),
    Route("POST", "/environments/{members_env}/start", "member"),
    Route("POST", "/environments/{members_env}/stop", "member"),
    Route("POST", "/environments/{members_env}/restart", "member"),
    Route("DELETE", "/environments/{members_env}", "member"),
    # Everyone who may see it sees its endpoints; the command and token only those who may operate it.
    Route("GET", "/environments/{members_env}/access", "viewer"),
    Route("GET", "/environments/{members_env}/events", "viewer"),
    Route("GET", "/environments/{members_env}/queue", "viewer"),
    Route("GET", "/environments/{members_env}/metrics?range=1h", "viewer"),
    Route("GET", "/environments/metrics", "signed-in"),
    # The environment waits for GPUs, so whoever may read its log is told it has no container yet.
    Route("GET", "/environments/{members_env}/logs", "viewer", ok=409),
    Route(
        "POST",
        "/images",
        "admin",
        lambda w, r: {"name": "mine", "reference": f"registry.example.org/t/{r}:1", "workspace": _ws_name(w)},
    ),
    Route("GET", "/images", "signed-in"),
    Route("GET", "/images/search?q=img", "signed-in"),
    Route("GET", "/images/{image}", "viewer"),
    Route("DELETE", "/images/{image}", "admin"),
    Route("GET", "/billing/records", "signed-in"),
    Route("GET", "/billing/records?workspace={workspace}&environment=members-env&from=2026-11-01", "admin"),
    Route("GET", "/billing/usage", "signed-in"),
    Route("GET", "/billing/usage?workspace={workspace}", "admin"),
    Route("GET", "/billing/invoices", "signed-in"),
    Route("GET", "/billing/invoices?workspace={workspace}", "admin"),
    Route("GET", "/billing/invoices/{invoice}", "admin"),
    Route("GET", "/billing/invoices/{invoice}.csv", "admin"),
    Route("GET", "/billing/prices", "signed-in"),
    Route(
        "PUT",
        "/billing/prices",
        "platform",
        lambda w, r: {"prices": [{"resource": "gpu", "gpu_model": "H100", "unit_price": "2.49"}]},
    ),
    Route(
        "PUT",
        "/registry-credentials",
        "platform",
        lambda w, r: {"auths": {"harbor.example.org": {"username": "robot", "password": f"pw-{r}"}}},
    ),
    Route("GET", "/registry-credentials", "platform"),
    Route(
        "PUT",
        "/registries/lab-registry",
        "platform",
        lambda w, r: {"kind": "oci", "url": "https://registry.lab.example.org", "public": ["library"]},
    ),
    Route("GET", "/registries", "platform"),
    Route("GET", "/registries/lab-registry", "platform"),
    Route("DELETE", "/registries/lab-registry", "platform"),
    Route(
        "PUT",
        "/registries/lab-registry/login",
        "platform",
        lambda w, r: {"username": "robot", "password": f"pw-{r}"},
    ),
    Route("DELETE", "/registries/lab-registry/login", "platform"),
    # an OCI registry makes no robots: a platform admin is told so (422), everyone else is refused first
    Route("POST", "/registries/lab-registry/robots", "platform", lambda w, r: {"project": "library"}, ok=422),
    Route("POST", "/images/sync?registry=lab-registry", "platform"),
    Route("DELETE", "/registry-credentials/harbor.example.org", "platform"),
    Route("GET", "/ops/status", "platform"),
    Route("GET", "/schemas/environment.json", "public"),
]

_RANK = {"viewer": 0, "member": 1, "admin": 2, "owner": 3, "platform": 3}


def expected(route: Route, role: str) -> str:
    """`ok`, or the refusal status as text."""
    if route.access == "public":
        return "ok"
    if role == "anonymous":
        return "401"
    if route.access == "signed-in":
        return "ok"
    if route.access == "platform":
        return "ok" if role == "platform" else "403"
    if route.access == "self":
        return "ok" if role in ("member", "platform") else "404"
    if role == "outsider":
        return "404"
    return "ok" if _RANK[role] >= _RANK[route.access] else "403"


def _path(route: Route, world: World, role: str) -> str:
    values = {
        "workspace": world.workspace,
        "members_env": world.members_env,
        "image": world.image,
        "invoice": world.invoice,
        "host": world.host,
        "gpu": world.gpu,
        "member": world.users["member"],
        "spare": world.spare,
        "viewer_extra": world.viewer_extra,
        "token": world.tokens.get(role, uuid.uuid4()),
        "ssh_key": uuid.uuid4(),
        "dataset": world.dataset,
    }
    return route.path.format(**values)


def _headers(role: str, world: World) -> dict[str, str]:
    if role == "anonymous":
        return {}
    token = issue_token(JWT_SECRET, world.users[role], "access", dt.timedelta(minutes=5)).token
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(api_url: str, sessions: object) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{api_url}/api/v1", timeout=30) as made:
        yield made


def test_every_route_of_the_app_is_in_the_matrix(client: httpx.Client) -> None:
    document = client.get("/openapi/openapi.json").json()
    served = {
        (method.upper(), path.removeprefix("/api/v1"))
        for path, operations in document["paths"].items()
        if path.startswith("/api/v1")
        for method in operations
    }
    listed = {(r.method, _template(r.path)) for r in ROUTES}
    assert served == listed


def _template(path: str) -> str:
    names = {
        "{workspace}": "{workspace_id}",
        "{members_env}": "{environment_id}",
        "{image}": "{image_id}",
        "{invoice}": "{invoice_id}",
        "{host}": "{host_id}",
        "{gpu}": "{gpu_id}",
        "{spare}": "{user_id}",
        "{token}": "{token_id}",
        "{ssh_key}": "{key_id}",
        "{dataset}": "{dataset_id}",
        "/harbor.example.org": "/{registry}",
        "/lab-registry": "/{name}",
    }
    # the CSV of an invoice is the same operation as the invoice (a path parameter cannot carry a suffix)
    path = path.partition("?")[0].removesuffix(".csv")
    for ours, theirs in names.items():
        path = path.replace(ours, theirs)
    if path.startswith("/quotas/") and not path.startswith("/quotas/workspaces"):
        path = path.replace("{member}", "{customer_id}")
    return path.replace("{member}", "{customer_id}").replace("{viewer_extra}", "{customer_id}")


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_route_allows_exactly_the_roles_it_should(route: Route, client: httpx.Client, engine: Engine) -> None:
    outcomes = {}
    for role in ROLES:
        world = build_world(engine)
        with engine.connect() as connection:
            _WS_NAMES[world.workspace] = connection.execute(
                text("SELECT name FROM workspaces WHERE id = :id"), {"id": world.workspace}
            ).scalar_one()
        body = route.body(world, role) if route.body else None
        response = client.request(
            route.method, _path(route, world, role), json=body, headers=_headers(role, world)
        )
        assert response.status_code < 500, f"{role}: {response.status_code} {response.text}"
        success = response.status_code == route.ok if route.ok else response.is_success
        outcomes[role] = "ok" if success else str(response.status_code)
    assert outcomes == {role: expected(route, role) for role in ROLES}


def test_members_cannot_operate_each_others_environments(client: httpx.Client, engine: Engine) -> None:
    world = build_world(engine)
    member = _headers("member", world)
    assert client.post(f"/environments/{world.owners_env}/stop", headers=member).status_code == 403
    assert client.get(f"/environments/{world.owners_env}/access", headers=member).status_code == 200
    assert client.get(f"/environments/{world.owners_env}", headers=member).status_code == 200
    admin = _headers("admin", world)
    assert client.post(f"/environments/{world.owners_env}/stop", headers=admin).status_code == 202
