"""The load a chaos run puts on the API: several users in their own workspaces create, stop, start,
update, re-apply and delete environments and change their spending limits, chosen by a seeded random
generator.

Every answer is counted by status. A 500 is a violation whatever the fault; a 503 (database or process
unavailable) and a refused connection (the API restarting) are what a client retries.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

PASSWORD = "chaos monkey passphrase"  # noqa: S105 - a throwaway account of a throwaway database


@dataclass
class Tenant:
    """A user, their workspace, and the environments they made."""

    client: httpx.Client
    workspace: str
    workspace_id: str | None = None
    environments: dict[str, str] = field(default_factory=dict)
    """name → id."""


def _spec(name: str, workspace: str, rng: random.Random) -> dict[str, Any]:
    gpus = rng.choice([1, 1, 2])
    return {
        "kind": "environment",
        "name": name,
        "workspace": workspace,
        "image": "nvcr.io/nvidia/pytorch:24.05-py3",
        "command": ["sleep", "infinity"],
        "resources": {"gpus": {"count": gpus, "model": "H100"}, "cpu": 2, "memory": "4Gi"},
    }


def api_token(client: httpx.Client, email: str, password: str) -> str:
    """Sign in and mint an API token that lasts the whole run (an access token expires after
    `access_token_minutes`, shorter than a long run), before any fault strikes."""
    signed = client.post("/auth/login", json={"email": email, "password": password})
    signed.raise_for_status()
    access = signed.json()["access_token"]
    minted = client.post(
        "/auth/tokens", json={"name": "chaos"}, headers={"Authorization": f"Bearer {access}"}
    )
    minted.raise_for_status()
    return str(minted.json()["token"])


class Churn:
    """Users working against the API until `stop` is set."""

    def __init__(self, api_url: str, seed: int, users: int = 3) -> None:
        self.api = f"{api_url}/api/v1"
        self.rng = random.Random(seed)
        self.users = users
        self.statuses: Counter[int] = Counter()
        self.unreachable = 0
        self.tenants: list[Tenant] = []
        self.created = 0
        self._lock = threading.Lock()

    def setup(self) -> None:
        """Register the users and give each a workspace."""
        anonymous = httpx.Client(base_url=self.api, timeout=15)
        for index in range(self.users):
            email, name = f"chaos{index}@example.org", f"chaos{index}"
            self._call(
                anonymous, "POST", "/auth/register", {"email": email, "username": name, "password": PASSWORD}
            )
            client = httpx.Client(base_url=self.api, timeout=15)
            client.headers["Authorization"] = f"Bearer {api_token(client, email, PASSWORD)}"
            workspace = f"chaos-ws-{index}"
            made = self._call(client, "POST", "/workspaces", {"name": workspace})
            self.tenants.append(Tenant(client, workspace, made["id"] if made else None))
        anonymous.close()

    def _call(self, client: httpx.Client, method: str, path: str, body: Any = None) -> Any:
        """One request, its status counted (a transport error counted apart); the answer's JSON when it
        succeeded."""
        try:
            answer = client.request(method, path, json=body)
        except httpx.TransportError:
            with self._lock:
                self.unreachable += 1
            return None
        with self._lock:
            self.statuses[answer.status_code] += 1
        return answer.json() if answer.status_code < 300 and answer.content else None

    def step(self) -> None:
        """One user action."""
        tenant = self.rng.choice(self.tenants)
        action = self.rng.choice(
            ["create", "create", "stop", "start", "restart", "update", "reapply", "delete", "budget"]
        )
        if action == "budget" and tenant.workspace_id is not None:
            # the owner changes the spending limit: none, one a minute of GPU spends (policy stops,
            # waits with `budget exhausted`), or a roomy one that lets the waiting start again
            limit = self.rng.choice([None, "0.05", "1000.00"])
            self._call(
                tenant.client, "PUT", f"/workspaces/{tenant.workspace_id}/settings", {"spending_limit": limit}
            )
            return
        if action == "create" or not tenant.environments:
            name = f"e{self.created}"
            self.created += 1
            made = self._call(
                tenant.client, "POST", "/environments/apply", _spec(name, tenant.workspace, self.rng)
            )
            if made is not None and made.get("environment"):
                tenant.environments[name] = made["environment"]["id"]
            return
        name = self.rng.choice(sorted(tenant.environments))
        env = tenant.environments[name]
        if action in {"stop", "start", "restart"}:
            self._call(tenant.client, "POST", f"/environments/{env}/{action}")
        elif action == "update":
            self._call(tenant.client, "POST", "/environments/apply", _spec(name, tenant.workspace, self.rng))
        elif action == "reapply":  # the same file twice: the second changes nothing
            spec = _spec(name, tenant.workspace, random.Random(name))
            self._call(tenant.client, "POST", "/environments/apply", spec)
            self._call(tenant.client, "POST", "/environments/apply", spec)
        else:
            self._call(tenant.client, "DELETE", f"/environments/{env}")
            del tenant.environments[name]

    def run(self, stop: threading.Event, pause_s: float) -> None:
        while not stop.wait(pause_s):
            self.step()

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + self.unreachable

    def close(self) -> None:
        for tenant in self.tenants:
            tenant.client.close()
