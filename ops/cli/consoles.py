"""The two terminals every command writes to: results on stdout, logs and errors on stderr.

Neither reads Rich markup: what they print comes from the server and from users (names, comments,
addresses like `[fe80::1]`), and a `[/]` in a workspace's name must print as written, not crash the
CLI. Style is applied with `rich.text.Text`, never with markup in strings."""

from __future__ import annotations

from rich.console import Console

console = Console(markup=False)
err_console = Console(stderr=True, markup=False)
