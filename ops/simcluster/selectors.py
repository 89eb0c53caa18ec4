"""Label and field selectors, as the Kubernetes API parses them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]
LabelCheck = Callable[[dict[str, str]], bool]

_SET = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_KEY = re.compile(r"^[\w./-]+$")


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def _label_check(part: str) -> LabelCheck:
    if match := _SET.match(part):
        key, operator, values = match.groups()
        wanted = {value.strip() for value in values.split(",") if value.strip()}
        inside = operator == "in"
        return lambda labels: (labels.get(key) in wanted) == inside
    if "!=" in part:
        key, value = (s.strip() for s in part.split("!=", 1))
        return lambda labels: labels.get(key) != value
    if "=" in part:
        key, value = (s.strip() for s in part.replace("==", "=").split("=", 1))
        return lambda labels: labels.get(key) == value
    if part.startswith("!") and _KEY.match(part[1:].strip()):
        absent = part[1:].strip()
        return lambda labels: absent not in labels
    if _KEY.match(part):
        return lambda labels: part in labels
    raise ValueError(f"unable to parse requirement: {part!r}")


def label_selector(selector: str | None) -> Predicate:
    """A predicate over objects for `selector` (`a=b,c!=d,e in (f,g),h,!i`); ValueError when malformed."""
    checks = [_label_check(raw.strip()) for raw in _split(selector or "")]
    return lambda obj: all(check(obj.get("metadata", {}).get("labels") or {}) for check in checks)


def _field(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for step in path.split("."):
        value = value.get(step) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def _field_check(part: str) -> Predicate:
    negate = "!=" in part
    path, value = (s.strip() for s in part.replace("!=", "=").replace("==", "=").split("=", 1))
    if not path or "=" not in part.replace("!=", "="):
        raise ValueError(f"invalid field selector: {part!r}")
    return lambda obj: (_field(obj, path) == value) != negate


def field_selector(selector: str | None) -> Predicate:
    """A predicate for `selector` over dotted fields (`metadata.name=x,spec.nodeName!=y`)."""
    parts = [raw.strip() for raw in _split(selector or "")]
    for part in parts:
        if "=" not in part:
            raise ValueError(f"invalid field selector: {part!r}")
    checks = [_field_check(part) for part in parts]
    return lambda obj: all(check(obj) for check in checks)
