"""The CLI's connection to the API: where it is, the saved credentials, and calls that turn problem
documents into one readable line.

The server URL and token come from the settings (`REMOTEGPU_SERVER_URL`, `REMOTEGPU_TOKEN`), else from
what `remotegpu login` saved in the user's config folder (mode 0600: it holds a token).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import platformdirs

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.core.platform.settings import Settings


class ApiError(RemoteGPUError):
    """The API refused a request; the message is its problem document's detail."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ClientProfile:
    """What `remotegpu login` remembers."""

    server: str | None = None
    token: str | None = None
    workspace: str | None = None


def profile_path() -> Path:
    """Where the profile lives (`$XDG_CONFIG_HOME/remotegpu/cli.json` on Linux)."""
    return Path(platformdirs.user_config_dir("remotegpu")) / "cli.json"


def load_profile() -> ClientProfile:
    """The saved profile, or an empty one."""
    path = profile_path()
    if not path.exists():
        return ClientProfile()
    try:
        data = json.loads(path.read_text())
        return ClientProfile(**{k: data.get(k) for k in ("server", "token", "workspace")})
    except (ValueError, TypeError):
        raise RemoteGPUError(
            f"{path}: not a RemoteGPU CLI profile; delete it and run `remotegpu login`"
        ) from None


def save_profile(profile: ClientProfile) -> Path:
    """Write the profile readable by the user only."""
    path = profile_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(asdict(profile), file, indent=2)
    return path


def server_url(settings: Settings, profile: ClientProfile) -> str:
    """The API to talk to: the configured one, else the saved one, else the local default."""
    return settings.server_url or profile.server or f"http://{settings.api_host}:{settings.api_port}"


class ApiClient:
    """Calls under `/api/v1`; every non-2xx answer raises `ApiError` with the API's own words.

    `refused_hint` is added to a 401 answer: what to do when the token it sent is refused. Only a client
    with a saved or configured token has one; signing in (`login`, `register`) sends no token, so a wrong
    password is never answered with "run `remotegpu login`"."""

    def __init__(
        self, server: str, token: str | None, *, refused_hint: str | None = None, timeout: float = 30.0
    ) -> None:
        # the API's own prefix is ours to add: `--server http://host:8080/api/v1` means the same server
        self.server = server.rstrip("/").removesuffix("/api/v1").rstrip("/")
        self.signed_in = token is not None
        self._refused_hint = refused_hint if token else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=f"{self.server}/api/v1", headers=headers, timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Settings, profile: ClientProfile | None = None) -> ApiClient:
        """A client for the configured server and token, falling back to the saved profile."""
        profile = profile or load_profile()
        if settings.token:  # it wins over the saved one, so `remotegpu login` would not replace it
            return cls(
                server_url(settings, profile), settings.token, refused_hint="REMOTEGPU_TOKEN was refused"
            )
        return cls(server_url(settings, profile), profile.token, refused_hint="run `remotegpu login`")

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
    ) -> Any:
        """Send a request (a JSON body, or raw `content`) and return the decoded JSON body (None for 204)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        headers = {"Content-Type": "application/octet-stream"} if content is not None else None
        try:
            response = self._http.request(
                method, path, json=json_body, params=query, content=content, headers=headers
            )
        except httpx.TransportError as error:
            raise RemoteGPUError(
                f"cannot reach the API at {self.server} ({error.__class__.__name__}); is it running"
                " (`remotegpu dev`), and is the server URL right (`remotegpu login --server`)?"
            ) from None
        _raise_for_problem(response, self._refused_hint)
        return None if response.status_code == 204 or not response.content else response.json()

    def get(self, path: str, **params: Any) -> Any:
        """GET with query parameters."""
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        """POST a JSON body."""
        return self.request("POST", path, json_body=body, params=params)

    def put(self, path: str, body: Any = None, **params: Any) -> Any:
        """PUT a JSON body."""
        return self.request("PUT", path, json_body=body, params=params)

    def items(self, path: str, **params: Any) -> Iterator[Any]:
        """Every item of a paginated list, page after page."""
        cursor = None
        while True:
            page = self.get(path, cursor=cursor, limit=200, **params)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def stream_lines(self, path: str, **params: Any) -> Iterator[str]:
        """A streamed text response, line by line."""
        query = {k: v for k, v in params.items() if v is not None}
        try:
            with self._http.stream("GET", path, params=query, timeout=None) as response:
                if response.is_error:
                    response.read()
                    _raise_for_problem(response, self._refused_hint)
                yield from response.iter_lines()
        except httpx.TransportError as error:
            raise RemoteGPUError(
                f"the log stream from {self.server} broke ({error.__class__.__name__})"
            ) from None


def _raise_for_problem(response: httpx.Response, refused_hint: str | None) -> None:
    if response.is_success:
        return
    detail = _problem_detail(response)
    if detail is None:  # not our API (a wrong URL, a proxy, another service): say where and what it was
        raise ApiError(
            response.status_code,
            f"{response.request.url.copy_with(query=None)} answered {response.status_code}"
            f" {response.reason_phrase}: is REMOTEGPU_SERVER_URL / --server a RemoteGPU API?",
        )
    if response.status_code == 401 and refused_hint:
        detail = f"{detail} ({refused_hint})"
    raise ApiError(response.status_code, f"{detail} [HTTP {response.status_code}]")


def _problem_detail(response: httpx.Response) -> str | None:
    """The detail (else title) of a problem document, or None for any other body."""
    try:
        problem = response.json()
    except ValueError:
        return None
    if not isinstance(problem, dict):
        return None
    detail = problem.get("detail") or problem.get("title")
    return detail if isinstance(detail, str) and detail else None
