"""The grammar of an image reference (the Distribution project's `reference` package): an optional
registry host, a lower-case repository path, an optional tag and an optional digest. A reference that
does not parse is refused when the spec is submitted, naming what is wrong, rather than failing as a pull
error on a node later."""

from __future__ import annotations

import re

from remotegpu.core.platform.errors import InvalidInputError

_DOMAIN = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$"
    r"|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$"
)
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")


def check_reference(reference: str) -> None:
    """InvalidInputError on `$.image` unless `reference` is a well-formed image reference."""
    rest, _, digest = reference.partition("@")
    if digest and not _DIGEST.match(digest):
        _refuse(reference, f"the digest {digest!r} is not algorithm:hex, e.g. sha256: and 64 hex digits")
    first, slash, remainder = rest.partition("/")
    has_domain = bool(slash) and (
        "." in first or ":" in first or first == "localhost" or first.startswith("[")
    )
    path = remainder if has_domain else rest
    if has_domain and not _DOMAIN.match(first):
        _refuse(reference, f"{first!r} is not a registry host[:port]")
    last = path.rsplit("/", 1)[-1]
    tag = None
    if ":" in last:
        path, _, tag = path.rpartition(":")
    if tag is not None and not _TAG.match(tag):
        _refuse(reference, f"the tag {tag!r} may hold letters, digits, '_', '.' and '-' (128 at most)")
    for component in path.split("/"):
        if not _COMPONENT.match(component):
            _refuse(
                reference,
                f"the repository part {component!r} must be lower-case letters and digits, joined by '.', '_',"
                " '__' or '-'",
            )


def _refuse(reference: str, why: str) -> None:
    raise InvalidInputError("$.image", f"{reference!r} is not an image reference: {why}")
