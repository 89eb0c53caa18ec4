"""Specs for tests, through the parser the API and the CLI use, so no test stores what they would refuse."""

from __future__ import annotations

from typing import Any

from remotegpu.core.environments.spec import EnvironmentSpec, parse_spec

IMAGE = "harbor.example.org/ml/pytorch:24.05-cuda12"


def environment_spec(name: str, fields: dict[str, Any] | None = None) -> EnvironmentSpec:
    """`fields` (a spec document without its name; only an image when None) named `name`, parsed and
    checked as `remotegpu apply` or the API would (`SpecError` if they would refuse it)."""
    return parse_spec({"image": IMAGE, **(fields or {}), "name": name})
