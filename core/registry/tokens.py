"""Registry auth: Basic, and Bearer tokens per the distribution token spec (`docs/spec/auth/token.md`).

A token-auth registry answers 401 with `WWW-Authenticate: Bearer realm="…",service="…",scope="…"`. The
client then GETs `realm?service=…&scope=…` (each of the challenge's space-separated scopes as its own
`scope` parameter), with Basic credentials when it has some, and retries with `Authorization: Bearer
<token>`. Tokens are kept per (realm, service, scope) until shortly before `expires_in` (60 s when the
answer leaves it out) runs out, and the scope a repository (or the catalog) last needed is remembered, so
later requests carry the token at once instead of being challenged again. A token refused anyway (revoked,
or short of a scope) is fetched again once. The token endpoint's refusal (401/403) is a
`RegistryAuthError`; its being down is temporary (`TokenUnavailableError`, which the HTTP layer retries).
Tokens, like passwords, never reach a repr, a log line or an error message.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import httpx

from remotegpu.core.registry.auth import Challenge, RegistryCredentials, parse_challenge
from remotegpu.core.registry.client import RegistryAuthError

DEFAULT_EXPIRES_IN = 60
_EARLY = 0.8
"""Use a token for this share of its lifetime, so it does not run out between the check and its use."""
_RESOURCE = re.compile(r"/v2/(.+?)/(?:manifests|tags|blobs)/")


class TokenUnavailableError(httpx.TransportError):
    """The token endpoint could not answer now (unreachable, 5xx, 429): as temporary as the registry
    being down."""


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    expires_at: float


def _resource_of(request: httpx.Request) -> str:
    """What a request reads, as a registry scopes it: a repository name, or the path (`/v2/_catalog`)."""
    match = _RESOURCE.match(request.url.path)
    return match.group(1) if match else request.url.path


class TokenAuth(httpx.Auth):
    """`httpx.Auth` answering Basic and Bearer challenges; thread-safe. The first request to a registry
    goes out bare; once it has asked for Basic, later requests carry the credentials at once."""

    def __init__(
        self,
        credentials: RegistryCredentials | None,
        *,
        timeout: float = 10.0,
        verify: bool | str = True,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._credentials = credentials
        self._basic = False
        self._clock = clock
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._scope_of: dict[str, tuple[str, str, str]] = {}
        self._lock = threading.Lock()
        self._endpoint = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)), verify=verify, transport=transport
        )

    def __repr__(self) -> str:
        return f"TokenAuth({self._credentials!r})"

    def close(self) -> None:
        self._endpoint.close()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        resource = _resource_of(request)
        cached = self._cached(resource)
        if cached is not None:
            request.headers["Authorization"] = f"Bearer {cached}"
        elif self._basic and self._credentials is not None:
            request.headers["Authorization"] = self._credentials.basic()
        response = yield request
        if response.status_code != 401:
            return
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            return
        if challenge.scheme == "bearer":
            request.headers["Authorization"] = f"Bearer {self._fetch(challenge, resource)}"
            yield request
        elif challenge.scheme == "basic" and self._credentials is not None and not self._basic:
            self._basic = True
            request.headers["Authorization"] = self._credentials.basic()
            yield request

    def _cached(self, resource: str) -> str | None:
        with self._lock:
            key = self._scope_of.get(resource)
            token = self._tokens.get(key) if key else None
            if token is None or token.expires_at <= self._clock():
                return None
            return token.value

    def _fetch(self, challenge: Challenge, resource: str) -> str:
        """A new token for the challenge's scopes (kept for later requests to `resource`)."""
        realm = challenge.params.get("realm", "")
        service = challenge.params.get("service", "")
        scope = challenge.params.get("scope", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryAuthError(f"the registry's Bearer challenge names no usable realm ({realm[:80]!r})")
        params: list[tuple[str, str | int | float | bool | None]] = [("service", service)] if service else []
        params += [("scope", s) for s in scope.split()]
        headers = {"Authorization": self._credentials.basic()} if self._credentials is not None else {}
        where = f"token endpoint {httpx.URL(realm).host}{httpx.URL(realm).path}"
        started = self._clock()
        try:
            answer = self._endpoint.get(realm, params=params, headers=headers)
        except httpx.TransportError as error:
            raise TokenUnavailableError(f"{where}: {type(error).__name__}") from None
        if answer.status_code == 429 or answer.status_code >= 500:
            raise TokenUnavailableError(f"{where} answered {answer.status_code}")
        if answer.status_code in (401, 403):
            raise RegistryAuthError(f"{where} answered {answer.status_code}: check the registry credentials")
        body = _json_object(answer)
        value = body.get("token") or body.get("access_token")
        if answer.status_code != 200 or not isinstance(value, str) or not value:
            raise RegistryAuthError(f"{where} answered {answer.status_code} without a token")
        expires_in = body.get("expires_in")
        lifetime = expires_in if isinstance(expires_in, int) and expires_in > 0 else DEFAULT_EXPIRES_IN
        key = (realm, service, scope)
        with self._lock:
            now = self._clock()
            for old in [k for k, t in self._tokens.items() if t.expires_at <= now]:
                del self._tokens[old]
            self._tokens[key] = _Token(value, started + lifetime * _EARLY)
            self._scope_of[resource] = key
        return value


def _json_object(answer: httpx.Response) -> dict[str, object]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
