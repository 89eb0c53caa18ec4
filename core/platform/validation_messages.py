"""msgspec's validation messages in the words of our own: `$.resources.gpus: must be between 0 and 64`
instead of ``Expected `int` >= 0 - at `$.resources.gpus` ``.

msgspec reports one violated bound, a type name (`int | object`) or an enum value and where; users need
the whole rule and what to write. So a message is split into its JSON path and its complaint, and when
the type that was being decoded is known (`root`), the path is looked up in it (through
`msgspec.inspect`) to state both bounds, the allowed values, or the pattern's meaning. The API's problem
documents and the CLI's spec files both go through `field_and_message`, so they say the same thing.
Anything unrecognised passes through unchanged rather than being guessed at.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
from msgspec import inspect

PATTERN_MEANINGS = {
    r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$": (
        "must be a lower-case DNS label: a-z, 0-9 and '-', at most 63 characters"
    ),
    r"^[A-Za-z_][A-Za-z0-9_]*$": "must be a variable name: letters, digits and '_', not starting with a digit",
    r"^/": "must be an absolute path (starting with /)",
    r"^[^@\s]+@[^@\s]+\.[^@\s]+$": "must be an e-mail address",
    r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,63}$": (
        "must be 2 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    ),
    r"^[a-z0-9]+:[a-f0-9]{32,}$": "must be algorithm:hex, e.g. sha256:0123…",
    r"^sha256:[0-9a-f]{64}$": "must be sha256: and 64 lower-case hex digits (what `sha256sum` prints)",
    r"^[A-Za-z0-9_][A-Za-z0-9._ -]{0,254}$": (
        "must be a file name of letters, digits, '.', '_', '-' and spaces, not starting with '.'"
    ),
}
"""What each regular expression of our structs means, said to a person (a test checks each pattern of the
spec and of the API's document is here)."""

_TYPE_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "decimal": "a number",
    "str": "a string",
    "bool": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
    "uuid": "a UUID",
    "datetime": "a date and time (RFC 3339)",
    "date": "a date (YYYY-MM-DD)",
    "duration": "a duration",
    "bytes": "base64 text",
}

_AT = re.compile(r"^(?P<message>.*?)(?: - at (?:`(?P<key>key)` in )?`(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")
_WRONG_TYPE = re.compile(r"^Expected `(?P<expected>[^`]*)`, got `(?P<got>[^`]*)`$")
_BOUND = re.compile(r"^Expected `(?P<kind>int|float|decimal)` (?P<op>>=|>|<=|<) (?P<value>\S+)$")
_MULTIPLE = re.compile(r"^Expected `(?:int|float)` that's a multiple of (?P<value>\S+)$")
_LENGTH = re.compile(r"^Expected `(?P<kind>str|array|object|bytes)` of length (?P<op>>=|<=) (?P<value>\d+)$")
_REGEX = re.compile(r"^Expected `str` matching regex '(?P<pattern>.*)'$", re.DOTALL)
_ENUM = re.compile(r"^Invalid enum value (?P<value>.*)$", re.DOTALL)
_STEP = re.compile(r"""\.(?P<field>[^.\[]+)|\[(?P<index>\d+|\.\.\.|"(?:[^"\\]|\\.)*")\]""")


def field_and_message(
    error: str, root: Any = None, data: Any = None, *, from_text: bool = False
) -> tuple[str, str]:
    """The JSON path at fault (`$` for the document itself) and what is wrong with it, readably.

    `error` is the text of a `msgspec.ValidationError`; `root` is the type that was being decoded, if
    known (it lets the message name both bounds of a range and the allowed values of an enum); `data`
    the document that was decoded, if known (it names the key msgspec writes as `[...]`). `from_text`:
    the value was text (a query parameter), so "not a string" would say nothing.
    """
    match = _AT.match(error)
    assert match is not None, "the pattern matches any text"
    path, message = match["path"] or "$", match["message"]
    if "[...]" in path and root is not None and data is not None:
        path = _name_keys(path, root, data)
    for pattern in (_UNKNOWN_FIELD, _MISSING_FIELD):
        named = pattern.match(message)
        if named:
            field = f"{path}.{named['name']}"
            if pattern is _UNKNOWN_FIELD:
                return field, f"unknown field `{named['name']}`; remove it or fix its spelling"
            return field, "is required"
    types = _types_at(root, path, key=match["key"] is not None)
    said = _say(message, types)
    if from_text:
        said = said.removesuffix(", not a string")
    if match["key"] is not None:
        said = f"keys {said}" if said.startswith("must") else f"key: {said}"
    return path, said


def _say(message: str, types: list[Any]) -> str:
    wrong = _WRONG_TYPE.match(message)
    if wrong:
        named = [t for t in wrong["expected"].split(" | ") if t != "null"] or ["null"]
        if "float" in named and "int" in named:  # "a whole number or a number" says less than "a number"
            named.remove("int")
        got = "a decimal number" if wrong["got"] == "float" else _word(wrong["got"])
        return f"must be {_either([_word(t) for t in named])}, not {got}"
    bound = _BOUND.match(message)
    if bound:
        return _range(bound["op"], bound["value"], _first(types, inspect.IntType, inspect.FloatType))
    multiple = _MULTIPLE.match(message)
    if multiple:
        return f"must be a multiple of {multiple['value']}"
    length = _LENGTH.match(message)
    if length:
        unit = "characters" if length["kind"] == "str" else "items" if length["kind"] != "bytes" else "bytes"
        sized = (inspect.StrType,) if length["kind"] == "str" else (inspect.ListType, inspect.DictType)
        return _length(length["op"], int(length["value"]), unit, _first(types, *sized))
    regex = _REGEX.match(message)
    if regex:
        pattern = regex["pattern"].replace("\\\\", "\\")  # msgspec writes the pattern's backslashes twice
        return PATTERN_MEANINGS.get(pattern, f"must match the pattern {pattern}")
    enum = _ENUM.match(message)
    if enum:
        allowed = _allowed(types)
        if not allowed:
            return f"{enum['value']} is not one of the allowed values"
        return f"must be {_either(allowed, 'one of ')}, not {enum['value']}"
    return message


def _word(type_name: str) -> str:
    return _TYPE_WORDS.get(type_name, f"`{type_name}`")


def _either(options: list[str], several: str = "") -> str:
    if len(options) == 1:
        return options[0]
    if several:
        return several + ", ".join(options)
    return ", ".join(options[:-1]) + " or " + options[-1]


def _range(op: str, value: str, constrained: Any) -> str:
    if constrained is not None:
        # whole numbers turn strict bounds into inclusive ones; a float's strict bound stays as it is
        step = 1 if isinstance(constrained, inspect.IntType) else None
        low = constrained.ge if constrained.ge is not None else _shift(constrained.gt, step)
        high = (
            constrained.le if constrained.le is not None else _shift(constrained.lt, -step if step else None)
        )
        if low is not None and high is not None:
            return f"must be between {low} and {high}"
    return {
        ">=": f"must be at least {value}",
        ">": f"must be more than {value}",
        "<=": f"must be at most {value}",
        "<": f"must be less than {value}",
    }[op]


def _shift(value: Any, step: int | None) -> Any:
    return None if value is None or step is None else value + step


def _length(op: str, value: int, unit: str, constrained: Any) -> str:
    low = getattr(constrained, "min_length", None) if constrained is not None else None
    high = getattr(constrained, "max_length", None) if constrained is not None else None
    if low is not None and high is not None:
        return f"must be {low} to {high} {unit} long"
    if op == ">=":
        return "must not be empty" if value == 1 else f"must be at least {value} {unit} long"
    return f"must be at most {value} {unit} long"


def _allowed(types: list[Any]) -> list[str]:
    for found in types:
        if isinstance(found, inspect.LiteralType):
            return [repr(v) for v in sorted(found.values, key=str)]
        if isinstance(found, inspect.EnumType):
            return [repr(getattr(member, "value", member)) for member in found.cls]
    return []


def _first(types: list[Any], *kinds: type) -> Any:
    return next((t for t in types if isinstance(t, kinds)), None)


def _name_keys(path: str, root: Any, data: Any) -> str:
    """`path` with each `[...]` (a mapping's value) replaced by the key whose value fails: the first key
    (in the document's order, as msgspec checks them) whose entry alone still fails at the same place."""
    while "[...]" in path:
        before, after = path.split("[...]", 1)
        mapping = _value_at(data, before)
        if not isinstance(mapping, dict):
            return path
        for key in mapping:
            trial = _with_only(data, before, key)
            try:
                msgspec.convert(trial, root, strict=False)
            except msgspec.ValidationError as error:
                found = _AT.match(str(error))
                if found and (found["path"] or "").startswith(before + "[...]"):
                    path = f"{_key_path(before, key)}{after}"
                    break
            except (TypeError, ValueError):
                return path
        else:
            return path
    return path


def _key_path(parent: str, key: Any) -> str:
    """`$.env.A` for a key that reads as a name, `$.env["a b"]` otherwise."""
    text = str(key)
    return f"{parent}.{text}" if text.isidentifier() else f"{parent}[{json.dumps(text)}]"


def _steps(path: str) -> list[str | int]:
    steps: list[str | int] = []
    for step in _STEP.finditer(path.removeprefix("$")):
        if step["field"] is not None:
            steps.append(step["field"])
        elif step["index"].startswith('"'):
            steps.append(json.loads(step["index"]))
        else:
            steps.append(int(step["index"]))
    return steps


def _value_at(data: Any, path: str) -> Any:
    for step in _steps(path):
        try:
            data = data[step]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _with_only(data: Any, path: str, key: Any) -> Any:
    """A copy of `data` in which the mapping at `path` holds only `key`."""
    steps = _steps(path)

    def rebuilt(node: Any, depth: int) -> Any:
        if depth == len(steps):
            return {key: node[key]}
        copy = list(node) if isinstance(node, list) else dict(node)
        copy[steps[depth]] = rebuilt(node[steps[depth]], depth + 1)  # type: ignore[index]
        return copy

    return rebuilt(data, 0)


def _types_at(root: Any, path: str, *, key: bool) -> list[Any]:
    """The types (union members unwrapped) found at `path` in `root`; empty when either is unknown."""
    if root is None:
        return []
    try:
        current = _unwrapped([inspect.type_info(root)])
    except (TypeError, ValueError, msgspec.MsgspecError):
        return []
    for step in _STEP.finditer(path.removeprefix("$")):
        following: list[Any] = []
        for found in current:
            if step["field"] is not None and isinstance(found, inspect.StructType):
                following += [f.type for f in found.fields if f.encode_name == step["field"]]
            elif isinstance(found, inspect.DictType):  # `[...]`, or a key named `.A` / `["a b"]`
                following.append(found.value_type)
            elif step["index"] is not None and hasattr(found, "item_type"):
                following.append(found.item_type)
        current = _unwrapped(following)
    if key:
        current = _unwrapped([t.key_type for t in current if isinstance(t, inspect.DictType)])
    return current


def _unwrapped(types: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for found in types:
        if isinstance(found, inspect.Metadata):
            flat += _unwrapped([found.type])
        elif isinstance(found, inspect.UnionType):
            flat += _unwrapped(list(found.types))
        else:
            flat.append(found)
    return flat
