"""The create form and the pasted YAML, both turned into the one spec struct, and the dry run's diff.

Form inputs are named by the spec's JSON paths (`resources.gpus.count`), so an `InvalidInputError`
naming `$.resources.gpus.count` lands beside the input that holds it.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import yaml

from remotegpu.core.environments.spec import EnvironmentSpec, SpecError, parse_spec

FORM_FIELDS = (
    "name",
    "image",
    "command",
    "resources.gpus.count",
    "resources.gpus.model",
    "resources.cpu",
    "resources.memory",
    "access",
    "volumes.0.name",
    "volumes.0.size",
    "volumes.0.mount",
    "policies.idle_stop_after",
    "policies.max_duration",
)
ACCESS_CHOICES = ("ssh", "jupyter")
_INDEX = re.compile(r"\[(\d+)\]")


def field_key(path: str) -> str:
    """`$.volumes[0].size` → `volumes.0.size`: the form input a JSON path names."""
    return _INDEX.sub(r".\1", path.removeprefix("$").removeprefix("."))


@dataclass
class Parsed:
    """A spec read from the browser, or the errors by input name (`form` for those no input holds)."""

    spec: EnvironmentSpec | None
    errors: dict[str, str]


def _parse(document: Any, *, place: str | None = None) -> Parsed:
    try:
        return Parsed(parse_spec(document), {})
    except SpecError as error:
        key = place or field_key(error.field)
        message = error.detail if place is None else f"{error.field}: {error.detail}"
        return Parsed(None, {key if place or key in FORM_FIELDS else "form": message})


def spec_from_form(form: Mapping[str, Any], access: list[str], workspace: str) -> Parsed:
    """The form's spec: empty inputs are left out, so the spec's own defaults apply."""

    def value(name: str) -> str:
        raw = form.get(name)
        return raw.strip() if isinstance(raw, str) else ""

    document: dict[str, Any] = {"kind": "environment", "workspace": workspace}
    for name in ("name", "image"):
        document[name] = value(name)
    if value("command"):
        try:
            document["command"] = shlex.split(value("command"))
        except ValueError as error:
            return Parsed(None, {"command": f"cannot split into words: {error}"})
    gpus = {
        key: value(f"resources.gpus.{key}") for key in ("count", "model") if value(f"resources.gpus.{key}")
    }
    resources: dict[str, Any] = {"gpus": gpus} if gpus else {}
    resources |= {key: value(f"resources.{key}") for key in ("cpu", "memory") if value(f"resources.{key}")}
    if resources:
        document["resources"] = resources
    document["access"] = access
    volume = {
        key: value(f"volumes.0.{key}") for key in ("name", "size", "mount") if value(f"volumes.0.{key}")
    }
    if volume:
        document["volumes"] = [volume]
    policies = {
        key: value(f"policies.{key}")
        for key in ("idle_stop_after", "max_duration")
        if value(f"policies.{key}")
    }
    if policies:
        document["policies"] = policies
    return _parse(document)


def spec_from_yaml(text: str, workspace: str | None) -> Parsed:
    """The pasted YAML's spec; errors stay beside the text box, naming the field."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return Parsed(None, {"yaml": f"this is not YAML{where}: {getattr(error, 'problem', error)}"})
    if not isinstance(document, dict):
        return Parsed(None, {"yaml": "write one environment: a mapping with at least `name` and `image`"})
    if workspace and "workspace" not in document:
        document["workspace"] = workspace
    return _parse(document, place="yaml")


def spec_yaml(spec: EnvironmentSpec) -> str:
    """The spec as YAML, the way `remotegpu apply -f` reads it (its workspace included)."""
    return yaml.safe_dump(msgspec.to_builtins(spec), sort_keys=False)


def spec_diff(stored: dict[str, Any] | None, desired: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, line) of a unified diff from the stored spec to the desired one; kind is `add`, `remove`,
    `same` or `hunk`."""
    before = yaml.safe_dump(stored, sort_keys=True).splitlines() if stored else []
    after = yaml.safe_dump(desired, sort_keys=True).splitlines()
    kinds = {"+": "add", "-": "remove", " ": "same", "@": "hunk"}
    return [
        (kinds.get(line[:1], "same"), line)
        for line in difflib.unified_diff(before, after, "stored", "desired", lineterm="", n=100)
        if not line.startswith(("+++", "---"))
    ]
