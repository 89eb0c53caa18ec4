"""How the CLI prints results: Rich tables for people, `-o json` / `-o yaml` for scripts."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text


class OutputFormat(enum.StrEnum):
    """`-o` choices."""

    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


Column = tuple[str, Callable[[dict[str, Any]], Any]]


def emit(
    console: Console, data: Any, fmt: OutputFormat, columns: Sequence[Column], title: str | None = None
) -> None:
    """Print `data` (a list of items, or one item) in `fmt`."""
    if fmt is OutputFormat.JSON:
        console.print_json(json.dumps(data, default=str))
        return
    if fmt is OutputFormat.YAML:
        console.print(yaml.safe_dump(data, sort_keys=False), end="", highlight=False, soft_wrap=True)
        return
    console.print(table(data if isinstance(data, list) else [data], columns, title))


def table(items: list[dict[str, Any]], columns: Sequence[Column], title: str | None = None) -> Table:
    """A Rich table of `items` with one column per (header, getter). Cells are plain text (a `[/]` in a
    name is printed, not read as markup) and fold rather than lose their end: a token in a URL or a
    fingerprint must be whole to be copied."""
    made = Table(title=title, header_style="bold", box=None, pad_edge=False)
    for header, _ in columns:
        made.add_column(header, overflow="fold")
    for item in items:
        made.add_row(*(_cell(getter(item)) for _, getter in columns))
    return made


def _cell(value: Any) -> Text:
    if value is None:
        return Text("-")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    return Text(str(value))
