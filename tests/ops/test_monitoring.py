"""What ops get in Prometheus: a real Prometheus scrapes a running reconciler's and API's `/metrics`,
holds our series, evaluates the alert rules without error, and answers every panel of the Grafana
dashboard with series; `promtool` checks the rules and runs their unit tests."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

import remotegpu.ops
from remotegpu.api.app import create_app
from remotegpu.core.platform.settings import Settings
from remotegpu.ops.api_server import running_api
from remotegpu.ops.reconciler_runner import running_reconciler, wait_for_leadership
from remotegpu.tests.polling import poll_until
from remotegpu.tests.prometheus_world import Prometheus, ScrapeJob, binary, running_prometheus, series_names
from remotegpu.tests.reconciler.world import build_world

MONITORING = Path(remotegpu.ops.__file__).parent / "monitoring"
RULES = MONITORING / "alerts.yml"
GPU_SPEC: dict[str, Any] = {
    "image": "pytorch:latest",
    "resources": {"gpus": {"count": 4, "model": "H100"}, "cpu": 4, "memory": "8Gi"},
}
OURS = {
    "remotegpu_reconciler_leader",
    "remotegpu_reconciler_epoch",
    "remotegpu_reconciler_leadership_acquired_total",
    "remotegpu_reconcile_step_duration_seconds_bucket",
    "remotegpu_reconcile_errors_total",
    "remotegpu_reconcile_backoffs_total",
    "remotegpu_job_duration_seconds_count",
    "remotegpu_job_last_success_timestamp_seconds",
    "remotegpu_gpus",
    "remotegpu_host_up",
    "remotegpu_host_ports_free",
    "remotegpu_queue_length",
    "remotegpu_queue_oldest_wait_seconds",
    "remotegpu_environments",
    "remotegpu_reconcile_due",
    "remotegpu_billing_accrued_total",
    "remotegpu_meter_lag_seconds",
    "remotegpu_platform_gauges_up",
    "remotegpu_requests_total",
}


def test_the_alert_rules_pass_promtool_check() -> None:
    checked = subprocess.run(
        [binary("promtool"), "check", "rules", str(RULES)], check=False, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout


def test_the_alert_rules_pass_their_unit_tests() -> None:
    tested = subprocess.run(
        [binary("promtool"), "test", "rules", "alerts.test.yml"],
        check=False,
        capture_output=True,
        text=True,
        cwd=MONITORING,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.fixture
def scraped(engine: Engine, database_url: URL, sessions: object, tmp_path: Path) -> Iterator[Prometheus]:
    """Prometheus scraping a reconciler (leading, with its jobs running every second) and an API, over a
        platform with a running environment, one retrying a broken image, one waiting for GPUs and two GPUs
    free."""
    world = build_world(engine, database_url)  # one host of 8 H100
    world.reconciler.close()  # the world's replica never ran; the one below leads
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO prices (resource, gpu_model, unit_price, effective_from) VALUES ('gpu', 'H100', 2, now())"
            )
        )
    world.cluster.fail_image("broken:1", "ImagePullBackOff")
    world.submit("broken", {**GPU_SPEC, "image": "broken:1"})
    world.submit(
        "train", {**GPU_SPEC, "resources": {**GPU_SPEC["resources"], "gpus": {"count": 2, "model": "H100"}}}
    )
    world.submit("waiting", GPU_SPEC)
    settings = Settings(meter_seconds=1, policy_seconds=1, reconciler_metrics_port=0)
    with running_reconciler(database_url, settings, world.cluster, identity="scraped") as reconciler:
        assert wait_for_leadership(reconciler)
        with running_api(create_app(settings, engine)) as api:
            for _ in range(3):
                assert httpx.get(f"{api}/healthz").status_code == 200
            assert reconciler.metrics_url is not None
            jobs = [
                ScrapeJob("remotegpu-reconciler", [reconciler.metrics_url.split("/")[2]]),
                ScrapeJob("remotegpu-api", [api.split("/")[2]]),
            ]
            with running_prometheus(tmp_path / "prometheus", jobs, [RULES]) as prometheus:
                yield prometheus


def test_prometheus_scrapes_our_series_evaluates_the_alerts_and_answers_every_panel(
    scraped: Prometheus,
) -> None:
    for job in ("remotegpu-reconciler", "remotegpu-api"):
        poll_until(lambda job=job: scraped.targets_up(job), 30, f"{job} scraped")  # type: ignore[misc]
    missing: set[str] = set()

    def all_there() -> bool:
        missing.clear()
        missing.update(OURS - series_names(scraped, "remotegpu_"))
        return not missing

    poll_until(all_there, 30, "every series scraped", interval_s=0.5)
    scraped.wait_for('remotegpu_reconcile_errors_total{reason="ImagePullBackOff"}')
    assert scraped.query('remotegpu_queue_length{model="H100"}')[0]["value"][1] == "1"

    def rules() -> list[dict[str, Any]]:
        groups = scraped.client.get("/api/v1/rules").json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    evaluated = poll_until(
        rules,
        30,
        "every rule evaluated",
        until=lambda found: len(found) == 8 and all(r["health"] == "ok" for r in found),
    )
    firing = {rule["name"] for rule in evaluated if rule["state"] != "inactive"}
    assert "RemoteGPUNoLeader" not in firing, "a replica leads"

    # every panel of the dashboard parses and answers with series we export
    for title, expression in dashboard_expressions():
        assert scraped.wait_for(expression, timeout_s=30), f"{title}: {expression}"
