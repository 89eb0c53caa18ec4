"""The Kubernetes API plumbing: which answers are "exists", "absent", temporary, or errors; no cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import urllib3
from kubernetes import client  # type: ignore[import-untyped,unused-ignore]

from remotegpu.core.cluster.driver import ClusterUnavailableError
from remotegpu.core.cluster.kubernetes.client import call_api, create_or_get, delete_if_present, read_or_none


def _answer(status: int) -> Callable[..., Any]:
    def request(*_args: Any, **_kwargs: Any) -> Any:
        raise client.ApiException(status=status, reason=f"status {status}")

    return request


class _Response:
    data = b'{"kind": "Pod"}'


def test_server_errors_and_unreachable_apis_are_temporary() -> None:
    with pytest.raises(ClusterUnavailableError, match="answered 503"):
        call_api(_answer(503))

    def unreachable() -> None:
        raise urllib3.exceptions.MaxRetryError(None, "/api", "refused")  # type: ignore[arg-type]

    with pytest.raises(ClusterUnavailableError, match="unreachable: MaxRetryError"):
        call_api(unreachable)
    with pytest.raises(client.ApiException):
        call_api(_answer(403))


def test_create_is_create_or_get() -> None:
    made: list[tuple[str, dict[str, Any]]] = []
    assert create_or_get("ns", lambda ns, manifest, **_: made.append((ns, manifest)), {"kind": "Pod"})
    assert made == [("ns", {"kind": "Pod"})]
    assert create_or_get("ns", _answer(409), {}) is False
    with pytest.raises(client.ApiException):
        create_or_get("ns", _answer(422), {})
    with pytest.raises(ClusterUnavailableError):
        create_or_get("ns", _answer(500), {})


def test_read_and_delete_take_not_found_as_absent() -> None:
    assert read_or_none(_Response) == {"kind": "Pod"}
    assert read_or_none(_answer(404)) is None
    assert delete_if_present(lambda: None) is True
    assert delete_if_present(_answer(404)) is False
    with pytest.raises(client.ApiException):
        delete_if_present(_answer(403))
