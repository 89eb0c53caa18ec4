"""The root of the `remotegpu` command line: its app, its `--help` panels and the entry point `main`.

Expected failures (`RemoteGPUError`) print one readable line on stderr and exit with status 1; anything
else is a bug and keeps its traceback. The commands themselves live in `client/` (they talk to the API)
and `server/` (they run or administer a server); `--help` lists them in a Client and a Server panel.
"""

from __future__ import annotations

import sys
from importlib.metadata import version as package_version
from typing import Annotated, NoReturn

import typer

try:  # typer 0.29 carries its own copy of click, and raises that copy's exceptions
    from typer._click import exceptions as click_exceptions
except ImportError:  # older typer: click itself
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.ops.cli import client, server, typer_tweaks
from remotegpu.ops.cli.consoles import console, err_console

typer_tweaks.install()

app = typer.Typer(
    name="remotegpu",
    help="RemoteGPU: a self-hosted GPU cloud on your own Kubernetes cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",  # docstrings as written: `code`, line breaks joined (rich mode keeps them)
)


def _installed_version() -> str:
    return package_version("remotegpu")


def _print_version(wanted: bool) -> None:
    if wanted:
        console.print(f"remotegpu {_installed_version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the installed version and exit."
        ),
    ] = False,
) -> None:
    """RemoteGPU: a self-hosted GPU cloud on your own Kubernetes cluster."""


def version() -> None:
    """Print the installed RemoteGPU version."""
    console.print(f"remotegpu {_installed_version()}", highlight=False)


# The order of registration is the order of `--help`: the client commands (and `version`) first.
client.register_commands(app)
app.command(rich_help_panel=client.PANEL)(version)
server.register_commands(app)


def main() -> None:
    """Console-script entry point: expected failures, and a command line that does not parse, are one
    line on stderr (exit 1, and 2 for bad usage as click has it) instead of click's boxed usage text."""
    try:
        status = app(standalone_mode=False)
    except RemoteGPUError as error:
        _fail(str(error), 1)
    except click_exceptions.UsageError as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # typer has printed the help already
            sys.exit(error.exit_code)
        hint = f" (see {error.ctx.command_path} --help)" if error.ctx is not None else ""
        _fail(error.format_message() + hint, error.exit_code)
    except click_exceptions.ClickException as error:
        _fail(error.format_message(), error.exit_code)
    except typer.Abort:  # end of input or Ctrl-C at a prompt
        _fail("aborted", 1)
    sys.exit(status if isinstance(status, int) else 0)


def _fail(message: str, status: int) -> NoReturn:
    err_console.print(f"error: {' '.join(message.split())}", highlight=False, markup=False, soft_wrap=True)
    sys.exit(status)
