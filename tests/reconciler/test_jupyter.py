"""Jupyter access through the reconciler: a per-environment token in the secrets store, written into the
environment's Secret before its pod exists, and `JupyterUnavailable` when the image has no `jupyter`.

In-memory cluster here (the clock is frozen, so the readiness probe's grace is moved through); the same
over HTTP against the simulated cluster is in `test_jupyter_kubernetes.py`.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.environments.jupyter import jupyter_token_path
from remotegpu.core.environments.states import DesiredState
from remotegpu.core.platform import clock
from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.store import SecretNotFoundError
from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.reconciler.world import SPEC, World, build_world

START = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
NO_JUPYTER_IMAGE = "harbor.example.org/ml/plain-cuda:12"
GRACE = dt.timedelta(seconds=Settings().jupyter_probe_grace_seconds)


@pytest.fixture
def world(engine: Engine, database_url: URL, sessions: object) -> Iterator[World]:
    with clock.frozen_at(START):
        made = build_world(engine, database_url)
        yield made
        made.reconciler.close()


def _conditions(world: World, env: uuid.UUID) -> list[dict[str, Any]]:
    with world.engine.connect() as connection:
        found = connection.execute(text("SELECT conditions FROM environments WHERE id = :e"), {"e": env})
        return list(found.scalar_one())


def _events(world: World, env: uuid.UUID) -> str:
    with world.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT reason, message, data::text FROM events WHERE environment_id = :e"), {"e": env}
        )
        return "\n".join(" ".join(str(column) for column in row) for row in rows)


def test_the_pods_secret_holds_the_token_kept_in_the_store_and_it_stays_the_same(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = world.submit("notebook")
    world.reconciler.run_until_idle()
    assert world.phase(env) == "running"
    token = world.secrets.get(jupyter_token_path(world.workspace, env))
    assert isinstance(token, str)
    assert len(token) >= 40
    assert world.cluster.secrets[f"env-{env}-jupyter"] == {"JUPYTER_TOKEN": token}

    world.desire(env, DesiredState.STOPPED)
    world.reconciler.run_until_idle()
    world.desire(env, DesiredState.RUNNING)
    world.reconciler.run_until_idle()
    assert world.phase(env) == "running"
    assert world.cluster.secrets[f"env-{env}-jupyter"] == {"JUPYTER_TOKEN": token}, "generated once"

    world.desire(env, DesiredState.DELETED)
    world.reconciler.run_until_idle()
    assert f"env-{env}-jupyter" not in world.cluster.secrets
    with pytest.raises(SecretNotFoundError):
        world.secrets.get(jupyter_token_path(world.workspace, env))
    assert token not in caplog.text
    assert token not in _events(world, env)


def test_an_image_without_jupyter_runs_with_the_condition_that_says_the_fix(world: World) -> None:
    world.cluster.without_jupyter.add(NO_JUPYTER_IMAGE)
    with clock.frozen_at(START) as move:
        env = world.submit("plain", SPEC | {"image": NO_JUPYTER_IMAGE})
        world.reconciler.run_until_idle()
        assert world.phase(env) == "provisioning", "a container just started may not have been probed yet"
        assert _conditions(world, env) == []

        move(GRACE)
        world.reconciler.run_until_idle()
        assert world.phase(env) == "running", "SSH still works: the environment runs"
    (condition,) = _conditions(world, env)
    assert condition["type"] == "JupyterUnavailable"
    assert "use an image with Jupyter" in condition["message"]
    assert "drop `jupyter` from access" in condition["message"]
    assert "Jupyter unavailable" in _events(world, env), "the Running event says so too"


def test_the_condition_goes_once_jupyter_answers(world: World) -> None:
    world.cluster.without_jupyter.add(NO_JUPYTER_IMAGE)
    with clock.frozen_at(START) as move:
        env = world.submit("plain", SPEC | {"image": NO_JUPYTER_IMAGE})
        world.reconciler.run_until_idle()
        move(GRACE)
        world.reconciler.run_until_idle()
        assert [c["type"] for c in _conditions(world, env)] == ["JupyterUnavailable"]

        world.cluster.without_jupyter.clear()  # e.g. jupyter installed by hand in the running container
        move(dt.timedelta(seconds=Settings().resync_seconds))
        world.reconciler.run_until_idle()
    assert _conditions(world, env) == []
    assert world.phase(env) == "running"


def test_without_a_secrets_store_a_jupyter_environment_waits_naming_the_setting(
    engine: Engine, database_url: URL, sessions: object
) -> None:
    with clock.frozen_at(START):
        world = build_world(engine, database_url)
        world.reconciler.close()
        world.reconciler = Reconciler(
            database_url, world.cluster, Settings(), identity="no-secrets", listen=False
        )
        try:
            env = world.submit("notebook")
            world.reconciler.run_until_idle()
            row = world.row(env)
        finally:
            world.reconciler.close()
    assert (row.phase, row.reason) == ("scheduled", "SecretsUnavailable")
    assert "secrets_key" in row.last_error
    assert world.cluster.live_pods() == [], "no pod is created without its token"
