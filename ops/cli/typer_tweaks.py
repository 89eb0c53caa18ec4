"""The words typer 0.2x shows for values and arguments, put back to click's.

typer prints Python types where click printed words (`<list[Path]>`, `<str>`, and `<bool>` even for
`--help`) and `{name}` for an argument, which reads as a format placeholder. `install()` replaces the
few methods that choose those words; the root app calls it once, before any help is drawn.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperOption


def install() -> None:
    """Make `--help`, usage lines and usage errors use click's words (idempotent)."""
    for parameter_class in (TyperOption, TyperArgument):
        if hasattr(parameter_class, "display_type_rich"):  # typer >= 0.2x; older versions print click's words
            parameter_class.display_type_rich = _value_placeholder  # type: ignore[method-assign,assignment]
    TyperArgument.get_usage_pieces = _argument_usage  # type: ignore[method-assign,assignment]
    TyperArgument.get_error_hint = _argument_error_hint  # type: ignore[method-assign,assignment]


def _value_placeholder(param: Any, ctx: Any) -> str | None:
    """Click's words for an option's value in `--help` (PATH, TEXT, INTEGER, a list of choices), nothing
    for a flag, instead of the Python types typer 0.2x shows (`<list[Path]>`, `<str>`, and `<bool>` even for
    `--help`)."""
    if isinstance(param, TyperOption):
        if param.metavar is not None:
            return str(param.metavar)
        if param.is_flag:
            return None
    label = str(param.display_type(ctx)).strip("<>").removesuffix(" range")
    label = label.removeprefix("list[").removesuffix("]")
    return _CLICK_TYPE_NAMES.get(label, label)


_CLICK_TYPE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "Path": "PATH"}


def _argument_placeholder(argument: TyperArgument) -> str:
    """An argument as usage lines and errors name it: its metavar, else its name in capitals (`NAME`)."""
    return argument.metavar or (argument.name or "").upper()


def _argument_usage(argument: TyperArgument, ctx: Any) -> list[str]:
    """Click's usage words (`NAME`, `[NAMES]...`) instead of typer 0.29's `{name}`, which reads as a
    Python format placeholder."""
    shown = _argument_placeholder(argument)
    if not argument.required:
        shown = f"[{shown}]"
    return [f"{shown}..." if argument.nargs != 1 else shown]


def _argument_error_hint(argument: TyperArgument, *_: Any) -> str:
    return f"'{_argument_placeholder(argument)}'"
