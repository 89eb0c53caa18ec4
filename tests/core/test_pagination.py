"""Cursors: what a list returned decodes back to its key; anything else is one InvalidInputError."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remotegpu.core.platform.errors import InvalidInputError
from remotegpu.core.platform.pagination import KeyTypes, decode_cursor, encode_cursor

# Every key shape a list declares today.
KEYS: list[KeyTypes] = [(int,), (str,), (uuid.UUID,), (str, uuid.UUID), (datetime, uuid.UUID)]

_VALUES: dict[Any, st.SearchStrategy[Any]] = {
    # Text a row can hold: no NUL, no lone surrogate.
    str: st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00")),
    int: st.integers(-(2**63), 2**63 - 1),
    uuid.UUID: st.uuids(),
    # Fixed offsets: a zone's ambiguous hours never compare equal across zones (PEP 495).
    datetime: st.datetimes(
        timezones=st.builds(
            timezone, st.timedeltas(-timedelta(hours=23, minutes=59), timedelta(hours=23, minutes=59))
        )
    ),
}

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def _raw(document: object) -> str:
    """A cursor holding `document` however the client made it."""
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


@st.composite
def _keys(draw: st.DrawFn) -> tuple[KeyTypes, tuple[Any, ...]]:
    key = draw(st.sampled_from(KEYS))
    return key, tuple(draw(_VALUES[kind]) for kind in key)


def _check(cursor: str, key: KeyTypes) -> None:
    """Either values of exactly the declared types, or InvalidInputError naming the cursor."""
    try:
        decoded = decode_cursor(cursor, key)
    except InvalidInputError as error:
        refused = error
    else:
        assert decoded is not None
        assert [type(value) for value in decoded] == list(key)
        return
    assert refused.field == "cursor"
    assert "not a cursor this API returned" in str(refused)


@given(_keys())
def test_a_cursor_decodes_to_the_key_it_was_made_from(drawn: tuple[KeyTypes, tuple[Any, ...]]) -> None:
    """Invariant: decode(encode(key)) == key for every value a key part may take."""
    key, values = drawn
    assert decode_cursor(encode_cursor(*values), key) == values


@given(st.sampled_from(KEYS), _json)
def test_any_json_in_a_cursor_is_a_key_of_the_declared_types_or_refused(
    key: KeyTypes, document: object
) -> None:
    """Invariant: whatever JSON a client puts in a cursor, decoding never fails any other way."""
    _check(_raw(document), key)


@given(st.sampled_from(KEYS), st.text())
def test_any_text_as_a_cursor_is_a_key_or_refused(key: KeyTypes, cursor: str) -> None:
    _check(cursor, key)


@pytest.mark.parametrize(
    ("key", "cursor"),
    [
        ((int,), _raw(["abc"])),
        ((int,), _raw(["1.5"])),
        ((int,), _raw([" 1"])),
        ((int,), _raw(["١"])),  # an Arabic-Indic digit: int() takes it, a cursor must not
        ((int,), _raw([str(2**63)])),
        ((int,), _raw(["9" * 5000])),
        ((int,), _raw([1])),
        ((int,), _raw([True])),
        ((str,), _raw([None])),
        ((str,), _raw([["x"]])),
        ((str,), _raw([{"a": "b"}])),
        ((str,), _raw(["a\x00b"])),
        ((str,), _raw(["\ud800"])),
        ((str,), _raw([])),
        ((str,), _raw(["a", "b"])),
        ((str,), _raw({"0": "a"})),
        ((uuid.UUID,), _raw(["not-a-uuid"])),
        ((datetime, uuid.UUID), _raw(["2024-01-01T00:00:00", str(uuid.UUID(int=1))])),
        ((datetime, uuid.UUID), _raw(["2024-13-45T00:00:00+00:00", str(uuid.UUID(int=1))])),
        ((datetime, uuid.UUID), _raw(["1.5", str(uuid.UUID(int=1))])),
        ((datetime, uuid.UUID), _raw([datetime.now(UTC).isoformat()])),
        ((str,), "garbage!"),
        ((str,), "A"),
        ((str,), _raw(["a"]) + "*"),
        ((str,), base64.urlsafe_b64encode(b"\xff\xfe").decode()),
        ((str,), base64.urlsafe_b64encode(b"not json").decode()),
        ((str,), base64.urlsafe_b64encode(b"[" * 100_000).decode()),
    ],
)
def test_tampered_cursors_are_refused(key: KeyTypes, cursor: str) -> None:
    with pytest.raises(InvalidInputError, match="not a cursor this API returned"):
        decode_cursor(cursor, key)
