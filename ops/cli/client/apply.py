"""`remotegpu apply -f`: create or update environments from YAML spec files, with a `--dry-run` diff."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.ops.cli.client.options import Workspace
from remotegpu.ops.cli.client.session import chosen_workspace, signed_in_client
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.spec_files import read_specs


def apply(
    files: Annotated[list[Path], typer.Option("--filename", "-f", help="Spec file or folder; repeatable.")],
    workspace: Workspace = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
) -> None:
    """Create or update environments from YAML specs (by name, within their workspace)."""
    documents = read_specs(files)
    default = chosen_workspace(workspace)
    with signed_in_client() as client:
        for document in documents:
            chosen = document.spec.workspace or default
            if chosen is None:
                raise RemoteGPUError(f"{document.origin}: no workspace: add `workspace:` or pass -w NAME")
            result = client.post(
                "/environments/apply",
                document.data,
                workspace=None if document.spec.workspace else chosen,
                dry_run=dry_run or None,
            )
            suffix = " (dry run)" if dry_run else ""
            console.print(f"environment/{document.spec.name} {result['outcome']}{suffix}", highlight=False)
            if dry_run and result["outcome"] != "unchanged":
                _print_diff(result.get("stored_spec"), result["desired_spec"], document.spec.name)


def _print_diff(stored: dict[str, Any] | None, desired: dict[str, Any], name: str) -> None:
    before = yaml.safe_dump(stored, sort_keys=True).splitlines() if stored else []
    after = yaml.safe_dump(desired, sort_keys=True).splitlines()
    for line in difflib.unified_diff(before, after, f"{name} (stored)", f"{name} (desired)", lineterm=""):
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        console.print(line, style=style, highlight=False, markup=False)
