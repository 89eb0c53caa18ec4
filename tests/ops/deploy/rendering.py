"""Rendering the Kustomize deployment in ops/deploy/ the way an operator does: `kubectl kustomize`."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[3] / "ops" / "deploy"
OVERLAYS = ("dev", "production")


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """Every object of an overlay, as `kubectl kustomize` prints it."""
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
