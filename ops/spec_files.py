"""Reading environment specs from YAML files for `remotegpu apply -f`: files, folders, several
documents per file; every spec checked locally first, so a typo is reported with its file and field
before anything is sent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from remotegpu.core.environments.spec import EnvironmentSpec, SpecError, parse_spec
from remotegpu.core.platform.errors import RemoteGPUError

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class SpecDocument:
    """One spec and where it came from (`file.yaml` or `file.yaml#2` for a later document)."""

    origin: str
    data: dict[str, Any]
    spec: EnvironmentSpec


def _files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix in YAML_SUFFIXES and p.is_file()))
        elif path.exists():
            found.append(path)
        else:
            raise RemoteGPUError(f"{path}: no such file or folder")
    if not found:
        raise RemoteGPUError(f"no .yaml files in {', '.join(map(str, paths))}")
    return found


def _documents(path: Path) -> list[Any]:
    """The YAML documents of a file, empty ones (blank, only comments) left out."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise RemoteGPUError(f"{path}: not a text file (byte {error.start} is not UTF-8)") from None
    except OSError as error:
        raise RemoteGPUError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise RemoteGPUError(f"{where}: not valid YAML ({getattr(error, 'problem', error)})") from None


def read_specs(paths: list[Path]) -> list[SpecDocument]:
    """Every environment spec in `paths`, validated; RemoteGPUError naming the file and field otherwise."""
    documents: list[SpecDocument] = []
    for path in _files(paths):
        loaded = _documents(path)
        if not loaded:
            raise RemoteGPUError(f"{path}: no environment specs")
        for number, data in enumerate(loaded, start=1):
            origin = str(path) if len(loaded) == 1 else f"{path}#{number}"
            if not isinstance(data, dict):
                raise RemoteGPUError(f"{origin}: a spec is a mapping (kind: environment, name: …)")
            try:
                documents.append(SpecDocument(origin, data, parse_spec(data)))
            except SpecError as error:
                raise RemoteGPUError(f"{origin}: {error}") from None
    names = [(d.spec.workspace, d.spec.name) for d in documents]
    for key in names:
        if names.count(key) > 1:
            raise RemoteGPUError(f"environment {key[1]!r} is defined twice in the files given")
    return documents
