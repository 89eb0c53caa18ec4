"""A real Prometheus (Debian's `prometheus`) for the tests: started on loopback with a generated config,
scraping what the test names every second, queried through its HTTP API, stopped at the end.

No Prometheus installed is a test failure that says how to install it, never a skip: what we export is
only known to be right once a real Prometheus has scraped and queried it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from remotegpu.tests.polling import poll_until

PROMETHEUS = "prometheus"
INSTALL = "install Debian's Prometheus: apt-get install -y prometheus"


@dataclass(frozen=True)
class ScrapeJob:
    """One scrape job: `targets` as host:port, scraped every second."""

    name: str
    targets: Sequence[str]
    metrics_path: str = "/metrics"
    honor_labels: bool = False
    """Off, Prometheus renames a scraped `pod` or `namespace` label to `exported_pod`/`exported_namespace`
    (it adds its own target labels); on, the scraped labels win."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Target labels, as Kubernetes service discovery attaches the exporter's own `pod` and `namespace`."""

    def config(self) -> dict[str, Any]:
        return {
            "job_name": self.name,
            "metrics_path": self.metrics_path,
            "honor_labels": self.honor_labels,
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "static_configs": [{"targets": list(self.targets), "labels": dict(self.labels)}],
        }


def binary(name: str = PROMETHEUS) -> str:
    """The path of `prometheus` or `promtool`; fails the test (not a skip) when it is not installed."""
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} not found: {INSTALL}")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Prometheus:
    """A running Prometheus and the client of its HTTP API."""

    url: str
    process: subprocess.Popen[bytes]
    client: httpx.Client = field(repr=False)

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar) of `expression` now; an error answer fails the test."""
        answer = self.client.get("/api/v1/query", params={"query": expression})
        body = answer.json()
        assert body.get("status") == "success", f"{expression}: {body}"
        result = body["data"]["result"]
        return result if isinstance(result, list) else [{"metric": {}, "value": result}]

    def wait_for(
        self,
        expression: str,
        accept: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout_s: float = 30,
    ) -> list[dict[str, Any]]:
        """Query `expression` until `accept` takes its result (by default: any series), and return it."""
        return poll_until(
            lambda: self.query(expression),
            timeout_s,
            f"{expression} to answer",
            until=accept,
            interval_s=0.25,
        )

    def targets_up(self, job: str) -> bool:
        """Whether every target of `job` was scraped successfully last time."""
        result = self.query(f'up{{job="{job}"}}')
        return bool(result) and all(series["value"][1] == "1" for series in result)


@contextlib.contextmanager
def running_prometheus(
    folder: Path, jobs: Sequence[ScrapeJob], rule_files: Sequence[Path] = ()
) -> Iterator[Prometheus]:
    """Prometheus scraping `jobs` (and evaluating `rule_files`) every second, until the block ends."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [job.config() for job in jobs],
    }
    config_file = folder / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [
            binary(),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "prometheus.log").open("wb"),
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)
    try:

        def ready() -> bool:
            assert process.poll() is None, (folder / "prometheus.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                return client.get("/-/ready").status_code == 200
            return False

        poll_until(ready, 30, "Prometheus to be ready", interval_s=0.1)
        yield Prometheus(f"http://127.0.0.1:{port}", process, client)
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def series_names(prometheus: Prometheus, prefix: str) -> set[str]:
    """The metric names Prometheus holds that start with `prefix`."""
    answer = prometheus.client.get("/api/v1/label/__name__/values").json()
    return {name for name in answer["data"] if name.startswith(prefix)}
