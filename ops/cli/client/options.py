"""The options and arguments many client commands share, so each reads and helps the same way."""

from __future__ import annotations

from typing import Annotated

import typer

from remotegpu.ops.output import OutputFormat

Output = Annotated[OutputFormat, typer.Option("--output", "-o", help="table, json or yaml.")]
Workspace = Annotated[
    str | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace name or id (default: the one chosen by `remotegpu workspaces use`).",
    ),
]
Name = Annotated[str, typer.Argument(help="Environment name (or id).")]
