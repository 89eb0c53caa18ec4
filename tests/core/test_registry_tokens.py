"""Bearer-token auth against a real token-auth registry (docker-registry 2.8 with `auth.token`, trusting
a token endpoint of the test's): challenge, token, retry; tokens kept per scope until they expire; a
refused or short token is an auth error; a token endpoint that is down is temporary; no token or password
let out."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from remotegpu.core.registry import manifests
from remotegpu.core.registry.auth import RegistryCredentials
from remotegpu.core.registry.client import RegistryAuthError, RegistryUnavailableError
from remotegpu.core.registry.oci import OciRegistryClient
from remotegpu.core.registry.tokens import TokenAuth
from remotegpu.tests.registry_tokens import TokenRegistry, token_registry
from remotegpu.tests.registry_world import ImagePusher, PushedImage, unique_repository
from remotegpu.tests.secret_scan import SecretScan, secret_scan

__all__ = ["secret_scan", "token_registry"]

NO_WAIT = (0.0, 0.0)


@pytest.fixture
def pushed(token_registry: TokenRegistry) -> Iterator[PushedImage]:
    """An index under `v1` in a repository of the test's own, pushed with the writer's tokens."""
    pushing = ImagePusher(token_registry.url, token_registry.push_auth())
    yield pushing.index(unique_repository(), "v1")
    pushing.close()


def reader(
    token_registry: TokenRegistry, credentials: RegistryCredentials | None = None
) -> OciRegistryClient:
    return OciRegistryClient(token_registry.url, credentials or token_registry.reader, retry_delays=NO_WAIT)


def test_a_token_registry_is_read_with_bearer_tokens(
    token_registry: TokenRegistry, pushed: PushedImage
) -> None:
    client = reader(token_registry)

    names = {r.name for r in client.repositories()}
    resolved = client.resolve(pushed.repository, "v1")
    artifacts = list(client.artifacts(pushed.repository))
    client.close()

    assert pushed.repository in names
    assert (resolved.digest, resolved.size_bytes) == (pushed.digest, pushed.size_bytes)
    assert [(a.digest, a.tags) for a in artifacts] == [(pushed.digest, ("v1",))]
    scopes = set(token_registry.endpoint.issued)
    assert ("registry:catalog:*",) in scopes
    assert (f"repository:{pushed.repository}:pull",) in scopes


def test_a_token_is_reused_for_its_scope_until_it_expires(
    token_registry: TokenRegistry, pushed: PushedImage
) -> None:
    now = [1000.0]
    auth = TokenAuth(token_registry.reader, clock=lambda: now[0])
    http = httpx.Client(base_url=token_registry.url, auth=auth, headers={"Accept": manifests.ACCEPT})
    scope = (f"repository:{pushed.repository}:pull",)
    path = f"/v2/{pushed.repository}/manifests/v1"

    for _ in range(3):
        assert http.head(path).status_code == 200
    assert http.get(f"/v2/{pushed.repository}/tags/list").status_code == 200
    assert token_registry.endpoint.issued.count(scope) == 1

    now[0] += token_registry.endpoint.expires_in  # past its lifetime: not sent again, a new one is fetched
    assert http.head(path).status_code == 200
    assert token_registry.endpoint.issued.count(scope) == 2
    http.close()
    auth.close()


def test_refused_credentials_at_the_token_endpoint_are_an_auth_error(
    token_registry: TokenRegistry, pushed: PushedImage
) -> None:
    wrong = RegistryCredentials("reader", "not-the-password-4711")
    client = reader(token_registry, wrong)

    with pytest.raises(RegistryAuthError, match=r"token endpoint .* answered 401") as refused:
        client.resolve(pushed.repository, "v1")

    assert "not-the-password-4711" not in str(refused.value)
    client.close()


def test_a_token_without_the_needed_scope_is_an_auth_error(
    token_registry: TokenRegistry, pushed: PushedImage
) -> None:
    nobody = token_registry.endpoint.add_user(f"nobody-{pushed.digest[7:15]}", set())
    client = reader(token_registry, nobody)

    with pytest.raises(RegistryAuthError, match="answered 401"):
        client.resolve(pushed.repository, "v1")
    with pytest.raises(RegistryAuthError, match="_catalog answered 401"):
        list(client.repositories())
    client.close()


def test_a_token_endpoint_that_is_down_is_temporary(
    token_registry: TokenRegistry, pushed: PushedImage
) -> None:
    client = reader(token_registry)
    token_registry.endpoint.fail_next(2)
    assert client.resolve(pushed.repository, "v1").digest == pushed.digest
    client.close()

    client = reader(token_registry)
    token_registry.endpoint.fail_next(3)
    with pytest.raises(RegistryUnavailableError, match="TokenUnavailableError"):
        client.resolve(pushed.repository, "v1")
    client.close()


def test_no_token_or_password_is_logged(
    token_registry: TokenRegistry, pushed: PushedImage, secret_scan: SecretScan
) -> None:
    logging.getLogger("httpx").setLevel(logging.DEBUG)
    secret_scan.secret("reader password", token_registry.endpoint.users["reader"].password)
    first = len(token_registry.endpoint.tokens)
    client = reader(token_registry)

    list(client.repositories())
    list(client.artifacts(pushed.repository))
    token_registry.endpoint.fail_next(3)
    with pytest.raises(RegistryUnavailableError) as down:
        reader(token_registry).resolve(unique_repository(), "v1")
    secret_scan.output("error", down.value, repr(client))
    client.close()

    for number, token in enumerate(token_registry.endpoint.tokens[first:]):
        secret_scan.secret(f"token {number}", token)
    assert len(token_registry.endpoint.tokens) > first
    assert secret_scan.leaks() == []
