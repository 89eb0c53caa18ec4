"""Every paged list over HTTP: a cursor the API did not return is a 422 naming `cursor`, never a 500."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

from remotegpu.tests.api.conftest import Caller, spec

_VALID: dict[str, str] = {
    "int": "1",
    "str": "a",
    "uuid": str(uuid.UUID(int=1)),
    "datetime": "2024-01-01T00:00:00+00:00",
}

# Parts that are not of the kind: the first ones are wrong for every kind.
_NOT_TEXT: list[Any] = [None, 1, 1.5, True, ["x"], {"a": "b"}, "a\x00b", "\ud800"]
_WRONG: dict[str, list[Any]] = {
    "int": [*_NOT_TEXT, "abc", "1.5", "", "9" * 30, "-" + "9" * 19],
    "str": _NOT_TEXT,
    "uuid": [*_NOT_TEXT, "not-a-uuid", ""],
    "datetime": [*_NOT_TEXT, "1.5", "2024-01-01T00:00:00", "2024-13-45T00:00:00+00:00", ""],
}

# Every list that takes `cursor`, with the kinds of its sort key.
_LISTS: list[tuple[str, dict[str, str], tuple[str, ...]]] = [
    ("/environments", {}, ("datetime", "uuid")),
    ("/environments/{environment}/events", {}, ("int",)),
    ("/workspaces", {}, ("str",)),
    ("/images", {}, ("str", "uuid")),
    ("/images/search", {"q": "pytorch"}, ("str", "uuid")),
    ("/billing/records", {}, ("datetime", "uuid")),
    ("/billing/invoices", {}, ("datetime", "uuid")),
    ("/hosts", {}, ("str",)),
    ("/users", {}, ("uuid",)),
]


def _cursor(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


def _tampered(kinds: tuple[str, ...]) -> Iterator[str]:
    """Cursors that no list keyed by `kinds` returns."""
    valid = [_VALID[kind] for kind in kinds]
    yield from ["garbage!", "A", _cursor(valid) + "*", "é"]
    yield from (base64.urlsafe_b64encode(raw).decode() for raw in [b"\xff\xfe", b"not json", b"[" * 3_000])
    yield from (_cursor(document) for document in [{"0": valid[0]}, [], [*valid, "a"], [valid]])
    if len(kinds) == 2:
        yield _cursor(valid[:1])
    for position, kind in enumerate(kinds):
        for wrong in _WRONG[kind]:
            yield _cursor([*valid[:position], wrong, *valid[position + 1 :]])


def test_a_tampered_cursor_is_422_naming_the_cursor_on_every_list(admin: Caller) -> None:
    assert admin.post("/workspaces", json={"name": "research"}).status_code == 201
    created = admin.post("/environments", json=spec("train", "research"))
    assert created.status_code == 201, created.text
    environment = created.json()["environment"]["id"]
    for path, params, kinds in _LISTS:
        url = path.format(environment=environment)
        valid = _cursor([_VALID[kind] for kind in kinds])
        assert admin.get(url, params={**params, "cursor": valid}).status_code == 200, path
        for cursor in _tampered(kinds):
            answer = admin.get(url, params={**params, "cursor": cursor})
            assert answer.status_code == 422, (path, cursor, answer.text)
            problem = answer.json()
            assert problem["errors"][0]["field"] == "cursor", (path, problem)
            assert "not a cursor this API returned" in problem["detail"], (path, problem)


def test_events_page_on_with_the_cursor_they_return(admin: Caller) -> None:
    assert admin.post("/workspaces", json={"name": "research"}).status_code == 201
    environment = admin.post("/environments", json=spec("train", "research")).json()["environment"]["id"]
    assert admin.post(f"/environments/{environment}/stop").status_code == 202
    first = admin.get(f"/environments/{environment}/events", params={"limit": 1}).json()
    assert first["next_cursor"]
    rest = admin.get(
        f"/environments/{environment}/events", params={"limit": 100, "cursor": first["next_cursor"]}
    ).json()
    assert rest["items"]
    assert rest["items"][0]["seq"] > first["items"][0]["seq"]
    beyond = _cursor([str(2**63 - 1)])
    assert admin.get(f"/environments/{environment}/events", params={"cursor": beyond}).json()["items"] == []
