"""Keyset pagination: an opaque cursor holding the sort key of the last row a page returned.

Keyset (not OFFSET) pages stay stable while rows are inserted and cost one index range scan however
deep the page. The cursor is base64 of JSON, so clients treat it as opaque and a malformed one is a
clear 422, not a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from remotegpu.core.errors import InvalidInputError

MAX_PAGE_SIZE = 200


def encode_cursor(*key: Any) -> str:
    """The cursor continuing after a row whose sort key is `key`."""
    return base64.urlsafe_b64encode(json.dumps([str(part) for part in key]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, parts: int) -> list[str] | None:
    """The sort key inside `cursor` (None when there is no cursor); InvalidInputError when malformed."""
    if cursor is None:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        key = None
    if not isinstance(key, list) or len(key) != parts or not all(isinstance(p, str) for p in key):
        raise InvalidInputError(
            "cursor", "not a cursor this API returned; pass `next_cursor` from the last page"
        )
    return key


def page(rows: list[Any], limit: int, key: Any) -> tuple[list[Any], str | None]:
    """Split rows fetched with `LIMIT limit + 1` into one page and the cursor of the next (None: last)."""
    if len(rows) <= limit:
        return rows, None
    kept = rows[:limit]
    return kept, encode_cursor(*key(kept[-1]))
