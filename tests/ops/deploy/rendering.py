"""Rendering the Kustomize deployment in ops/deploy/ the way an operator does: `kubectl kustomize`."""

from __future__ import annotations

import functools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[3] / "ops" / "deploy"
OVERLAYS = ("dev", "production")


MINIMUM_KUBECTL = (1, 27)
"""`labels` in a Kustomization needs kustomize 4.1 (kubectl 1.22); `kubectl apply` leaving validation to
the server (the simulated cluster publishes no schemas) needs kubectl 1.27."""


@functools.cache
def kubectl_version() -> tuple[int, int]:
    """The installed kubectl's (major, minor); fails naming the fix when it is too old for these tests."""
    result = subprocess.run(
        ["kubectl", "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"kubectl is needed (Debian: kubernetes-client): {result.stderr}"
    client = json.loads(result.stdout)["clientVersion"]
    version = (int(client["major"]), int(re.sub(r"\D.*", "", client["minor"])))
    assert version >= MINIMUM_KUBECTL, (
        f"kubectl {client['gitVersion']} is too old for ops/deploy (Kustomize `labels`, server-side field"
        f" validation): install kubectl {'.'.join(map(str, MINIMUM_KUBECTL))} or newer"
    )
    return version


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """Every object of an overlay, as `kubectl kustomize` prints it."""
    kubectl_version()
    result = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def find(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    """The one object of `kind` whose name is (or, for generated ConfigMaps, starts with) `name`."""
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(name)]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]
