"""The pod watch reconnects quietly: a dropped watch is normal, one debug line, no urllib3 warnings."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import pytest
import yaml

from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.tests.polling import poll_until


def test_a_watch_that_cannot_connect_logs_one_debug_line_per_attempt_and_no_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a port nothing listens on: every watch request fails at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "down", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "down", "context": {"cluster": "down", "user": "u"}}],
                "current-context": "down",
            }
        )
    )
    driver = KubernetesCluster.from_kubeconfig(str(kubeconfig))
    stop = threading.Event()
    caplog.set_level(logging.DEBUG)
    watching = threading.Thread(target=driver.watch_workloads, args=(lambda _id: None, stop))
    watching.start()
    try:
        poll_until(
            lambda: "Pod watch dropped" in caplog.text, 20, "a dropped watch to be logged", interval_s=0.05
        )
    finally:
        stop.set()
        watching.join(timeout=10)
    dropped = [r for r in caplog.records if r.getMessage().startswith("Pod watch dropped")]
    assert dropped
    assert all(r.levelno == logging.DEBUG for r in dropped)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "Retrying" not in caplog.text
