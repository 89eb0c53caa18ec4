"""Owners changing each other's membership at the same moment, over HTTP against real Postgres.

Every round starts three owners' requests together (a barrier) on a fresh workspace. Whatever the
interleaving, no request may fail with a 5xx (a deadlock used to answer 500), the workspace always
keeps an owner, and each request that succeeded took away exactly one owner (no race changes one
owner twice, except removals, of which one alone can succeed), so successes and the owners left add
up: two demotions that both acted on a stale role would leave none.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import Engine, text

from remotegpu.core.accounts.credentials import issue_token
from remotegpu.tests.allocation_world import make_user
from remotegpu.tests.api.conftest import JWT_SECRET, Caller

# Each request: (actor index, target index relative to the actor, demote or remove).
Race = list[tuple[int, int, str]]

RACES: dict[str, Race] = {
    "every owner demotes themselves": [(0, 0, "demote"), (1, 0, "demote"), (2, 0, "demote")],
    "every owner leaves": [(0, 0, "remove"), (1, 0, "remove"), (2, 0, "remove")],
    "each owner demotes the next": [(0, 1, "demote"), (1, 1, "demote"), (2, 1, "demote")],
    "each owner removes the next": [(0, 1, "remove"), (1, 1, "remove"), (2, 1, "remove")],
    "demotions and departures mixed": [(0, 0, "remove"), (1, 1, "demote"), (2, 1, "remove")],
}
ROUNDS = 2


@pytest.fixture
def owners(api_url: str, engine: Engine, anonymous: httpx.Client) -> Iterator[list[Caller]]:
    """Three signed-in users (rows and access tokens made directly: no password hashing to wait for)."""
    callers = []
    for name in ("alice", "bob", "carol"):
        with engine.begin() as connection:
            user_id = make_user(connection, name)
        token = issue_token(JWT_SECRET, user_id, "access", dt.timedelta(minutes=10)).token
        client = httpx.Client(
            base_url=f"{api_url}/api/v1", timeout=30, headers={"Authorization": f"Bearer {token}"}
        )
        callers.append(Caller(client, user_id, f"{name}@example.org", name))
    yield callers
    for caller in callers:
        caller.http.close()


def _workspace_of_three_owners(owners: list[Caller]) -> str:
    first = owners[0]
    workspace = str(first.post("/workspaces", json={"name": f"race-{uuid.uuid4().hex[:12]}"}).json()["id"])
    for other in owners[1:]:
        added = first.post(f"/workspaces/{workspace}/members", json={"user": other.username, "role": "owner"})
        assert added.status_code == 201, added.text
    return workspace


def _send(actor: Caller, workspace: str, target: Caller, action: str) -> httpx.Response:
    path = f"/workspaces/{workspace}/members/{target.user_id}"
    if action == "demote":
        return actor.http.patch(path, json={"role": "admin"})
    return actor.http.delete(path)


def _owners_left(engine: Engine, workspace: str) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT count(*) FROM workspace_members WHERE workspace_id = :w AND role = 'owner'"),
                {"w": workspace},
            ).scalar_one()
        )


def _race(
    pool: ThreadPoolExecutor, owners: list[Caller], workspace: str, requests: Race
) -> list[httpx.Response]:
    """Send every request of the race at once (a barrier releases them together)."""
    barrier = threading.Barrier(len(requests))

    def send(request: tuple[int, int, str]) -> httpx.Response:
        actor, offset, action = request
        barrier.wait()
        return _send(owners[actor], workspace, owners[(actor + offset) % len(owners)], action)

    return list(pool.map(send, requests))


def test_concurrent_owner_changes_never_fail_and_keep_an_owner(owners: list[Caller], engine: Engine) -> None:
    rounds = [(race, requests) for race, requests in RACES.items() for _ in range(ROUNDS)]
    with ThreadPoolExecutor(len(owners)) as pool:
        for race, requests in rounds:
            workspace = _workspace_of_three_owners(owners)
            answers = _race(pool, owners, workspace, requests)
            statuses = [answer.status_code for answer in answers]
            assert all(status in (200, 204, 403, 404, 409) for status in statuses), (race, answers)
            succeeded = sum(status in (200, 204) for status in statuses)
            left = _owners_left(engine, workspace)
            assert left >= 1, (race, statuses)
            assert left == len(owners) - succeeded, (race, statuses)
