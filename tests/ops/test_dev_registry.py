"""`remotegpu dev --registry harbor`: Harbor's contract fake with demo images beside the stack, the catalog
synced from it at start, and an environment of a synced image pinned to its digest."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy.engine import URL

from remotegpu.core.platform.settings import Settings
from remotegpu.ops.bootstrap import DEV_ADMIN_EMAIL
from remotegpu.ops.devstack import running_dev_stack
from remotegpu.tests.ops.test_dev_gateways import _free_port, fresh_database
from remotegpu.tests.polling import poll_until

__all__ = ["fresh_database"]


def test_dev_registry_harbor_syncs_demo_images_and_pins_an_environment_s_digest(
    fresh_database: URL, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=fresh_database.render_as_string(hide_password=False),
        data_dir=tmp_path / ".remotegpu",
        api_port=_free_port(),
    )
    with running_dev_stack(settings, "direct", "harbor") as stack:
        registry = dict(stack.describe())["Registry"]
        assert registry.startswith("harbor (the contract fake) at http://127.0.0.1:")
        assert "5 images synced" in registry
        assert stack.admin_password_file is not None
        password = stack.admin_password_file.read_text().strip()
        with httpx.Client(base_url=f"{stack.api_url}/api/v1", timeout=30) as api:
            token = api.post("/auth/login", json={"email": DEV_ADMIN_EMAIL, "password": password}).json()
            api.headers["Authorization"] = f"Bearer {token['access_token']}"
            names = {i["name"]: i for i in api.get("/images").json()["items"]}
            assert names["research/llm/finetune:v1"]["registry"] == "harbor-dev"
            spec = {
                "kind": "environment",
                "name": "demo",
                "workspace": "research",
                "image": "library/pytorch:24.05-cuda12",
                "resources": {"gpus": {"count": 1, "model": "H100"}, "cpu": 4, "memory": "16Gi"},
            }
            applied = api.post("/environments/apply", json=spec)
            assert applied.status_code < 300, applied.text
            environment = applied.json()["environment"]["id"]

            def shown() -> dict[str, object]:
                return dict(api.get(f"/environments/{environment}").json())

            running = poll_until(
                shown, timeout_s=60, what="the environment to run", until=lambda e: e["phase"] == "running"
            )
            pinned = running["pinned_image"]
            assert isinstance(pinned, dict)
            assert pinned["digest"] == names["library/pytorch:24.05-cuda12"]["digest"]
    # a restarted dev stack serves the fake where it was: its images' references and pins stay valid
    with running_dev_stack(settings, "direct", "harbor") as again:
        assert dict(again.describe())["Registry"] == registry
