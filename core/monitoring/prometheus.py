"""A reader of the Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`) over httpx.

Every failure a caller can do nothing about but wait — no connection, a timeout, a 5xx, an error answer,
a body that is not Prometheus's — is one `PrometheusUnavailableError` whose message says what happened,
so the API shows "Prometheus unavailable" and the idle check skips a tick instead of failing. The query
text is ours, so Prometheus refusing it (400/422: `bad_data`) is our bug and says so in the message.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import httpx

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.core.platform.settings import without_userinfo


class PrometheusUnavailableError(RemoteGPUError):
    """Prometheus did not answer a query (or answered with an error); the message says how."""


@dataclass(frozen=True)
class Series:
    """One series of an answer: its labels and its points as (Unix time, value), oldest first."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


class PrometheusClient:
    """Queries one Prometheus; safe to share between threads (httpx's client is)."""

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s)
        self.url = without_userinfo(url.rstrip("/"))
        """The address as messages show it: a `user:password@` in the setting is left out."""
        self.timeout_s = timeout_s

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def query(self, expression: str, at: dt.datetime | None = None) -> list[Series]:
        """The instant vector of `expression` at `at` (now by default): one point per series."""
        parameters = {"query": expression}
        if at is not None:
            parameters["time"] = f"{at.timestamp():.3f}"
        data = self._ask("/api/v1/query", parameters)
        if data.get("resultType") != "vector":
            raise PrometheusUnavailableError(f"expected a vector answer, got {data.get('resultType')!r}")
        return [Series(item["metric"], _points([item["value"]])) for item in data["result"]]

    def query_range(
        self, expression: str, start: dt.datetime, end: dt.datetime, step: dt.timedelta
    ) -> list[Series]:
        """`expression` evaluated every `step` from `start` to `end`: a matrix, one series per label set."""
        parameters = {
            "query": expression,
            "start": f"{start.timestamp():.3f}",
            "end": f"{end.timestamp():.3f}",
            "step": f"{max(step.total_seconds(), 0.001):g}",
        }
        data = self._ask("/api/v1/query_range", parameters)
        if data.get("resultType") != "matrix":
            raise PrometheusUnavailableError(f"expected a matrix answer, got {data.get('resultType')!r}")
        return [Series(item["metric"], _points(item["values"])) for item in data["result"]]

    def ready(self) -> str:
        """Prometheus's own readiness answer (`/-/ready`); raises when it is not ready."""
        try:
            answer = self._http.get("/-/ready")
        except httpx.HTTPError as error:
            raise PrometheusUnavailableError(_transport_message(self.url, error)) from None
        if answer.status_code != 200:
            raise PrometheusUnavailableError(f"{self.url} is not ready (HTTP {answer.status_code})")
        return answer.text.strip()

    def _ask(self, path: str, parameters: dict[str, str]) -> dict[str, Any]:
        # The server-side limit a little under ours, so a slow query ends as Prometheus's own error.
        parameters = {**parameters, "timeout": f"{max(int(self.timeout_s * 900), 100)}ms"}
        try:  # POST with a form, as Prometheus allows: a query naming many pods fits no URL
            answer = self._http.post(path, data=parameters)
        except httpx.HTTPError as error:
            raise PrometheusUnavailableError(_transport_message(self.url, error)) from None
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
            raise PrometheusUnavailableError(
                f"{self.url}{path} answered HTTP {answer.status_code} without a Prometheus body"
                " (is prometheus_url the Prometheus server's address?)"
            )
        if body["status"] != "success":
            error_type, error_text = body.get("errorType"), body.get("error")
            blame = " (a bug in RemoteGPU's query)" if error_type == "bad_data" else ""
            raise PrometheusUnavailableError(
                f"Prometheus answered HTTP {answer.status_code}: {error_type or 'error'}: {error_text}{blame}"
            )
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("result"), list):
            raise PrometheusUnavailableError("Prometheus answered without a result")
        return data


def _points(values: list[Any]) -> list[tuple[float, float]]:
    """Prometheus's `[time, "value"]` pairs as numbers, NaN and infinities dropped (no reading)."""
    points = []
    for at, value in values:
        number = float(value)
        if math.isfinite(number):
            points.append((float(at), number))
    return points


def _transport_message(url: str, error: httpx.HTTPError) -> str:
    if isinstance(error, httpx.TimeoutException):
        return f"Prometheus at {url} did not answer in time"
    return f"Prometheus at {url} cannot be reached ({type(error).__name__})"
