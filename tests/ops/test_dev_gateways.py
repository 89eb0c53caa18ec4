"""`remotegpu dev --gateway guacamole|jumpserver`: the product's contract fake runs beside the stack, and an
environment with SSH gets exactly one connection there while it runs, for its owner, gone on stop."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import URL

from remotegpu.core.platform.settings import GatewayChoice, Settings
from remotegpu.ops.bootstrap import DEV_ADMIN_EMAIL
from remotegpu.ops.devstack import running_dev_stack
from remotegpu.ops.postgres import create_fresh_database, drop_database
from remotegpu.tests.polling import poll_until

PRODUCTS: tuple[GatewayChoice, ...] = ("guacamole", "jumpserver")


@pytest.fixture
def fresh_database(postgres_server_url: URL) -> Iterator[URL]:
    url = create_fresh_database(postgres_server_url, "remotegpu_dev_gateway")
    yield url
    drop_database(url)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("product", PRODUCTS)
def test_dev_gateway_shows_one_connection_while_running(
    product: GatewayChoice, fresh_database: URL, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=fresh_database.render_as_string(hide_password=False),
        data_dir=tmp_path / ".remotegpu",
        api_port=_free_port(),
    )
    with running_dev_stack(settings, product) as stack:
        gateway = dict(stack.describe())["Gateway"]
        assert gateway.startswith(f"{product} (the contract fake) at http://127.0.0.1:")
        page_url = gateway.split(" at ", 1)[1].split()[0]
        assert stack.admin_password_file is not None
        password = stack.admin_password_file.read_text().strip()
        with httpx.Client(base_url=f"{stack.api_url}/api/v1", timeout=30) as api:
            token = api.post("/auth/login", json={"email": DEV_ADMIN_EMAIL, "password": password}).json()
            api.headers["Authorization"] = f"Bearer {token['access_token']}"
            assert api.post("/workspaces", json={"name": "lab"}).status_code == 201
            spec = {
                "kind": "environment",
                "name": "box",
                "workspace": "lab",
                "image": "nvcr.io/nvidia/pytorch:24.05-py3",
                "resources": {"gpus": {"count": 1, "model": "H100"}, "cpu": 4, "memory": "16Gi"},
                "access": ["ssh"],
            }
            environment = api.post("/environments/apply", json=spec).json()["environment"]["id"]
            name = f"remotegpu-{environment}"

            def phase() -> str:
                return str(api.get(f"/environments/{environment}").json()["phase"])

            poll_until(lambda: phase() == "running", timeout_s=60, what="the environment to run")
            page = httpx.get(page_url, timeout=10).text
            assert page.count(name) == 1, page
            kinds = [detail["kind"] for detail in api.get(f"/environments/{environment}/access").json()]
            assert kinds == ["ssh", product]

            api.post(f"/environments/{environment}/stop")
            poll_until(lambda: phase() == "stopped", timeout_s=60, what="the environment to stop")
            assert name not in httpx.get(page_url, timeout=10).text
