"""Keyset pagination: an opaque cursor holding the sort key of the last row a page returned.

Keyset (not OFFSET) pages stay stable while rows are inserted and cost one index range scan however
deep the page. The cursor is base64 of a JSON list of strings, so clients treat it as opaque.

A cursor comes back from the client and may have been tampered with, so each list declares the types
of its sort key (`KeyTypes`, e.g. `(datetime, uuid.UUID)`) and `decode_cursor` turns the strings back
into values of exactly those types before any query sees them. Whatever a cursor decodes to (not
base64, not JSON, a list of the wrong length, a nested object, a number where a string belongs, an
unparseable uuid or timestamp, an integer past Postgres's bigint, text Postgres cannot hold) is one
422 "not a cursor this API returned", never a 500 and never a database error.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from remotegpu.core.platform.errors import InvalidInputError

MAX_PAGE_SIZE = 200

KeyType = type[str] | type[int] | type[uuid.UUID] | type[datetime]
"""A type a sort key part may have; `bool` and other subclasses are not key types."""

KeyTypes = tuple[KeyType, ...]

_INTEGER = re.compile(r"-?[0-9]{1,19}")
_BIGINT = range(-(2**63), 2**63)


def encode_cursor(*key: Any) -> str:
    """The cursor continuing after a row whose sort key is `key` (timestamps as ISO 8601)."""
    parts = [part.isoformat() if isinstance(part, datetime) else str(part) for part in key]
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, key: KeyTypes) -> tuple[Any, ...] | None:
    """The sort key inside `cursor` as values of the types `key` declares (None when there is no
    cursor); InvalidInputError for anything `encode_cursor` did not make from such a key."""
    if cursor is None:
        return None
    try:
        # validate=True: characters outside the URL-safe alphabet are refused, not skipped.
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        parts = json.loads(raw)
        if not isinstance(parts, list) or len(parts) != len(key):
            raise ValueError("not a list of the key's length")
        return tuple(_part(kind, part) for kind, part in zip(key, parts, strict=True))
    # RecursionError: deeply nested JSON; ValueError covers binascii, JSON and Unicode errors.
    except (binascii.Error, ValueError, RecursionError) as error:
        raise InvalidInputError(
            "cursor", "not a cursor this API returned; pass `next_cursor` from the last page"
        ) from error


def _part(kind: KeyType, part: object) -> Any:
    """One part of a key as `kind`; ValueError when it is not one."""
    if not isinstance(part, str):
        raise ValueError("a key part is not a string")
    if kind is str:
        # Postgres text holds no NUL, and a lone surrogate cannot be sent as UTF-8.
        if "\x00" in part:
            raise ValueError("NUL in text")
        part.encode()
        return part
    if kind is int:
        if not _INTEGER.fullmatch(part) or int(part) not in _BIGINT:
            raise ValueError("not a bigint")
        return int(part)
    if kind is uuid.UUID:
        return uuid.UUID(part)
    if kind is datetime:
        at = datetime.fromisoformat(part)
        if at.tzinfo is None:
            raise ValueError("a timestamp without a time zone")
        return at
    raise TypeError(f"{kind!r} is not a cursor key type")  # a programming error, not the client's


def page(rows: list[Any], limit: int, key: Callable[[Any], tuple[Any, ...]]) -> tuple[list[Any], str | None]:
    """Split rows fetched with `LIMIT limit + 1` into one page and the cursor of the next (None: last)."""
    if len(rows) <= limit:
        return rows, None
    kept = rows[:limit]
    return kept, encode_cursor(*key(kept[-1]))
