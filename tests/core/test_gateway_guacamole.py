"""The Guacamole gateway against the fake Guacamole over HTTP: create-or-get by name, updates in place,
the connection's user group holding exactly the entitled users (revoking the others), idempotent deletes,
re-login, and failures as GatewayUnavailableError that never carry a password, token or key."""

from __future__ import annotations

import base64
import dataclasses
import logging
import socket
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from remotegpu.core.environments.states import AccessKind
from remotegpu.core.gateways.gateway import (
    GatewayTarget,
    GatewayUnavailableError,
    GatewayUser,
    connection_name,
)
from remotegpu.core.gateways.guacamole import GuacamoleGateway
from remotegpu.ops.fakes.guacamole import FakeGuacamole

ADMIN_PASSWORD = "admin-secret-Zq9"
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA-secret-key-body\n-----END OPENSSH PRIVATE KEY-----\n"
DS = "/api/session/data/postgresql"


@pytest.fixture
def guac() -> Iterator[FakeGuacamole]:
    with FakeGuacamole(base_path="/guacamole", admin_password=ADMIN_PASSWORD) as fake:
        yield fake
        assert fake.unexpected == [], "the gateway made calls the fake Guacamole does not implement"


@pytest.fixture
def gateway(guac: FakeGuacamole) -> Iterator[GuacamoleGateway]:
    client = GuacamoleGateway(guac.url, "guacadmin", ADMIN_PASSWORD, timeout=5.0)
    yield client
    client.close()


def user(name: str) -> GatewayUser:
    return GatewayUser(username=name, email=f"{name}@lab.example", display_name=name.title())


def target(
    environment_id: uuid.UUID | None = None, *, port: int = 2201, users: tuple[str, ...] = ("alice", "bob")
) -> GatewayTarget:
    return GatewayTarget(
        environment_id=environment_id or uuid.uuid4(),
        environment_name="train-llm",
        workspace_id=uuid.uuid4(),
        hostname="10.0.0.5",
        port=port,
        username="remotegpu",
        private_key=KEY,
        users=tuple(user(name) for name in users),
    )


def decoded_client_id(url: str, base: str) -> list[str]:
    prefix = f"{base}/#/client/"
    assert url.startswith(prefix)
    encoded = url.removeprefix(prefix)
    assert not set(encoded) & set("=+/"), "unpadded base64url"
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode().split("\0")


def test_ensuring_twice_makes_one_connection(gateway: GuacamoleGateway, guac: FakeGuacamole) -> None:
    wanted = target()
    first = gateway.ensure_connection(wanted)
    second = gateway.ensure_connection(wanted)

    assert first == second
    assert first.kind is AccessKind.GUACAMOLE
    assert first.environment_id == wanted.environment_id
    assert len(guac.connections) == 1
    made = guac.connections[first.connection_id]
    assert made.name == connection_name(wanted.environment_id)
    assert made.parent_identifier == "ROOT"
    assert made.protocol == "ssh"
    assert made.parameters == {
        "hostname": "10.0.0.5",
        "port": "2201",
        "username": "remotegpu",
        "private-key": KEY,
    }
    assert decoded_client_id(first.url, guac.url) == [first.connection_id, "c", "postgresql"]
    assert KEY not in first.url
    assert not [r for r in guac.requests if r.startswith("PUT")], "nothing changed: no update"
    assert guac.logins == 1, "the token is cached"


def test_a_retry_after_a_lost_answer_finds_the_connection_it_made(guac: FakeGuacamole) -> None:
    wanted = target()
    crashed = GuacamoleGateway(guac.url, "guacadmin", ADMIN_PASSWORD)
    guac.fail_next(1, status=None, handled=True, matching=f"POST /guacamole{DS}/connections")
    with pytest.raises(GatewayUnavailableError):
        crashed.ensure_connection(wanted)
    crashed.close()
    assert len(guac.connections) == 1, "the connection was made; only its answer was lost"

    restarted = GuacamoleGateway(guac.url, "guacadmin", ADMIN_PASSWORD)
    made = restarted.ensure_connection(wanted)
    restarted.close()
    assert list(guac.connections) == [made.connection_id]
    assert guac.readers_of(made.connection_id) == {"alice", "bob"}


class _Racing(httpx.HTTPTransport):
    """Runs `before` once, just ahead of the first POST to a path ending in `suffix`: another worker got there
    between this gateway's look-up and its create."""

    def __init__(self, suffix: str, before: Callable[[], object]) -> None:
        super().__init__()
        self.suffix, self.before = suffix, before

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith(self.suffix):
            self.before, before = (lambda: None), self.before
            before()
        return super().handle_request(request)


def test_a_connection_or_user_made_meanwhile_by_another_worker_is_taken_up(guac: FakeGuacamole) -> None:
    wanted = target()
    name = connection_name(wanted.environment_id)
    other = _Racing("/connections", lambda: guac.add_connection(name, "ssh", hostname="10.0.0.5"))
    racing = GuacamoleGateway(guac.url, "guacadmin", ADMIN_PASSWORD, transport=other)
    made = racing.ensure_connection(wanted)
    racing.close()
    assert list(guac.connections) == [made.connection_id]
    assert guac.connections[made.connection_id].name == name
    assert guac.readers_of(made.connection_id) == {"alice", "bob"}

    again = target(users=("dave",))
    other = _Racing("/users", lambda: guac.add_user("dave", "daves-password"))
    racing = GuacamoleGateway(guac.url, "guacadmin", ADMIN_PASSWORD, transport=other)
    second = racing.ensure_connection(again)
    racing.close()
    assert guac.users["dave"].password == "daves-password"
    assert guac.readers_of(second.connection_id) == {"dave"}


def test_a_changed_port_or_key_updates_the_connection_in_place(
    gateway: GuacamoleGateway, guac: FakeGuacamole
) -> None:
    environment = uuid.uuid4()
    first = gateway.ensure_connection(target(environment, port=2201))
    tuned = guac.connections[first.connection_id]
    tuned.parameters["color-scheme"] = "green-black"  # an admin's own touches survive an update
    tuned.attributes["max-connections"] = "3"

    moved = gateway.ensure_connection(target(environment, port=2202))
    assert moved.connection_id == first.connection_id
    assert len(guac.connections) == 1
    updated = guac.connections[first.connection_id]
    assert updated.parameters["port"] == "2202"
    assert updated.parameters["color-scheme"] == "green-black"
    assert updated.attributes["max-connections"] == "3"
    assert updated.name == connection_name(environment)

    rekeyed = dataclasses.replace(target(environment, port=2202), private_key=KEY + "\n# rotated")
    gateway.ensure_connection(rekeyed)
    assert guac.connections[first.connection_id].parameters["private-key"] == KEY + "\n# rotated"
    assert len([r for r in guac.requests if r.startswith("PUT")]) == 2


def test_exactly_the_given_users_may_open_it_and_the_others_are_revoked(
    gateway: GuacamoleGateway, guac: FakeGuacamole
) -> None:
    guac.add_user("carol", "carols-password")
    guac.add_user("alice", "alices-password")  # exists already: kept as it is, not re-created
    environment = uuid.uuid4()
    first = gateway.ensure_connection(target(environment, users=("alice", "bob")))
    name = connection_name(environment)
    assert guac.readers_of(first.connection_id) == {"alice", "bob"}
    assert guac.user_groups[name].member_users == {"alice", "bob"}
    assert guac.user_groups[name].connection_permissions == {first.connection_id: {"READ"}}

    guac.user_groups[name].member_users.add("carol")  # someone widened it in Guacamole's UI
    second = gateway.ensure_connection(target(environment, users=("alice",)))
    assert second.connection_id == first.connection_id
    assert guac.readers_of(first.connection_id) == {"alice"}, "bob and carol can no longer open it"
    gateway.ensure_connection(target(environment, users=()))
    assert guac.readers_of(first.connection_id) == set()
    gateway.ensure_connection(target(environment, users=("bob",)))
    assert guac.readers_of(first.connection_id) == {"bob"}

    assert list(guac.user_groups) == [name], "one group per connection"
    for username in ("alice", "bob", "carol", "guacadmin"):
        assert guac.permissions_of(username) == {}, "nothing is granted per user"
    assert guac.users["alice"].password == "alices-password"
    bob = guac.users["bob"]
    assert bob.password is None, "created without a password: bob signs in through the lab's SSO or LDAP"
    assert bob.attributes == {"guac-full-name": "Bob", "guac-email-address": "bob@lab.example"}
    assert [r for r in guac.requests if r == f"POST /guacamole{DS}/users"] == [f"POST /guacamole{DS}/users"]
    grants = [r for r in guac.requests if r.startswith("PATCH") and r.endswith("/permissions")]
    assert len(grants) == 1, "the group is granted READ once"


def test_an_unchanged_ensure_only_reads(gateway: GuacamoleGateway, guac: FakeGuacamole) -> None:
    wanted = target()
    gateway.ensure_connection(wanted)
    before = len(guac.requests)
    gateway.ensure_connection(wanted)
    assert [r.split()[0] for r in guac.requests[before:]] == ["GET"] * len(guac.requests[before:])


def test_a_lost_answer_after_the_group_was_made_still_leaves_one_group(guac: FakeGuacamole) -> None:
    wanted = target(users=("alice",))
    name = connection_name(wanted.environment_id)
    for step in (
        "POST /guacamole{DS}/userGroups",
        "PATCH /guacamole{DS}/userGroups/" + name + "/permissions",
    ):
        crashed = GuacamoleGateway(guac.url, "guacadmin", ADMIN_PASSWORD)
        guac.fail_next(1, status=None, handled=True, matching=step.format(DS=DS))
        with pytest.raises(GatewayUnavailableError):
            crashed.ensure_connection(wanted)
        crashed.close()
    assert list(guac.user_groups) == [name], "the group was made; only its answer was lost"

    restarted = GuacamoleGateway(guac.url, "guacadmin", ADMIN_PASSWORD)
    made = restarted.ensure_connection(wanted)
    restarted.close()
    assert list(guac.user_groups) == [name]
    assert guac.readers_of(made.connection_id) == {"alice"}


def test_a_group_made_meanwhile_by_another_worker_is_taken_up(guac: FakeGuacamole) -> None:
    wanted = target(users=("alice",))
    name = connection_name(wanted.environment_id)
    other = _Racing("/userGroups", lambda: guac.add_user_group(name, "mallory-not-a-user"))
    racing = GuacamoleGateway(guac.url, "guacadmin", ADMIN_PASSWORD, transport=other)
    made = racing.ensure_connection(wanted)
    racing.close()
    assert list(guac.user_groups) == [name]
    assert guac.user_groups[name].member_users == {"alice"}
    assert guac.readers_of(made.connection_id) == {"alice"}


def test_deleting_removes_the_connection_and_its_group_and_is_idempotent(
    gateway: GuacamoleGateway, guac: FakeGuacamole
) -> None:
    kept = gateway.ensure_connection(target())
    doomed = gateway.ensure_connection(target())
    gateway.delete_connection(doomed.environment_id)

    assert list(guac.connections) == [kept.connection_id]
    assert list(guac.user_groups) == [connection_name(kept.environment_id)]
    assert guac.readers_of(kept.connection_id) == {"alice", "bob"}
    assert "alice" in guac.users, "users stay"
    gateway.delete_connection(doomed.environment_id)
    gateway.delete_connection(uuid.uuid4())
    assert list(guac.connections) == [kept.connection_id]

    half = target()  # a delete that stopped after the group went: the next one removes the connection
    gateway.ensure_connection(half)
    guac.fail_next(1, status=503, matching=f"GET /guacamole{DS}/connections")
    with pytest.raises(GatewayUnavailableError):
        gateway.delete_connection(half.environment_id)
    assert gateway.connected_environments() == {kept.environment_id, half.environment_id}
    gateway.delete_connection(half.environment_id)
    assert gateway.connected_environments() == {kept.environment_id}
    assert list(guac.user_groups) == [connection_name(kept.environment_id)]


def test_connected_environments_are_the_connections_named_by_remotegpu(
    gateway: GuacamoleGateway, guac: FakeGuacamole
) -> None:
    ours = {gateway.ensure_connection(target(users=())).environment_id for _ in range(2)}
    for foreign in ("Lab desktop", "remotegpu-not-a-uuid", "remotegpu-"):
        guac.add_connection(foreign)

    assert len(guac.connections) == 5
    assert gateway.connected_environments() == ours


def test_an_expired_session_logs_in_again(gateway: GuacamoleGateway, guac: FakeGuacamole) -> None:
    made = gateway.ensure_connection(target())
    guac.expire_tokens()
    assert gateway.connected_environments() == {made.environment_id}
    guac.expire_tokens()
    gateway.delete_connection(made.environment_id)
    assert guac.connections == {}
    assert guac.logins == 3


def test_a_503_or_a_dropped_connection_is_unavailable_without_secrets(
    gateway: GuacamoleGateway, guac: FakeGuacamole
) -> None:
    gateway.connected_environments()  # logged in: the failures below hit the API calls
    guac.fail_next(1, status=503)
    with pytest.raises(GatewayUnavailableError) as unavailable:
        gateway.ensure_connection(target())
    assert str(unavailable.value) == "Guacamole list connections: 503 Service Unavailable"

    guac.fail_next(1, status=503, matching=f"PATCH /guacamole{DS}/userGroups")
    with pytest.raises(GatewayUnavailableError) as unavailable:
        gateway.ensure_connection(target())
    assert "Guacamole grant user group remotegpu-" in str(unavailable.value)
    assert "503" in str(unavailable.value)

    guac.fail_next(1, status=None)
    with pytest.raises(GatewayUnavailableError) as dropped:
        gateway.connected_environments()
    assert "RemoteProtocolError" in str(dropped.value)

    for message in (str(unavailable.value), str(dropped.value), repr(gateway), repr(target())):
        assert ADMIN_PASSWORD not in message
        assert "secret-key-body" not in message
    assert len(gateway.connected_environments()) == 1, "the next call works again"


def test_a_refused_admin_login_is_unavailable(guac: FakeGuacamole) -> None:
    wrong = GuacamoleGateway(guac.url, "guacadmin", "not-the-password")
    with pytest.raises(GatewayUnavailableError) as refused:
        wrong.connected_environments()
    wrong.close()
    assert "Guacamole login as 'guacadmin' refused (403 INVALID_CREDENTIALS: Permission Denied.)" in str(
        refused.value
    )
    assert "not-the-password" not in str(refused.value)

    guac.fail_next(1, status=502, matching="POST /guacamole/api/tokens")
    proxied = GuacamoleGateway(guac.url, "guacadmin", ADMIN_PASSWORD)
    with pytest.raises(GatewayUnavailableError, match="Guacamole login: 502 Bad Gateway"):
        proxied.connected_environments()
    proxied.close()


def test_a_url_without_the_web_application_path_is_named(guac: FakeGuacamole) -> None:
    root = guac.url.removesuffix("/guacamole")
    secret_in_url = root.replace("http://", "http://ops:url-secret@")
    misplaced = GuacamoleGateway(secret_in_url, "guacadmin", ADMIN_PASSWORD)
    with pytest.raises(GatewayUnavailableError) as not_there:
        misplaced.connected_environments()
    misplaced.close()
    assert str(not_there.value) == (
        f"Guacamole login: 404 at {root}/api/tokens: is guacamole_url the web application's address"
        " (e.g. https://host/guacamole)?"
    )
    assert "url-secret" not in str(not_there.value)
    assert ADMIN_PASSWORD not in str(not_there.value)
    assert guac.unexpected == ["POST /api/tokens"]
    guac.unexpected.clear()


def test_an_unreachable_gateway_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gone = GuacamoleGateway(f"http://127.0.0.1:{port}/guacamole", "guacadmin", ADMIN_PASSWORD, timeout=2.0)
    with pytest.raises(GatewayUnavailableError, match="Guacamole login: ConnectError"):
        gone.connected_environments()
    gone.close()


def test_a_named_data_source_must_be_one_the_login_offers(guac: FakeGuacamole) -> None:
    elsewhere = GuacamoleGateway(guac.url, "guacadmin", ADMIN_PASSWORD, data_source="mysql")
    with pytest.raises(GatewayUnavailableError, match=r"data source 'mysql' is not one of \['postgresql'\]"):
        elsewhere.connected_environments()
    elsewhere.close()

    named = GuacamoleGateway(guac.url, "guacadmin", ADMIN_PASSWORD, data_source="postgresql")
    made = named.ensure_connection(target())
    named.close()
    assert decoded_client_id(made.url, guac.url)[2] == "postgresql"


def test_close_signs_out_and_the_token_never_travels_in_a_url(guac: FakeGuacamole) -> None:
    client = GuacamoleGateway(guac.url, "guacadmin", ADMIN_PASSWORD)
    client.ensure_connection(target())
    assert guac.live_tokens == 1
    client.close()
    assert guac.live_tokens == 0
    assert guac.requests[-1] == "DELETE /guacamole/api/session"
    assert not [r for r in guac.requests if "/api/tokens/" in r or "?" in r]
    GuacamoleGateway(guac.url, "guacadmin", ADMIN_PASSWORD).close()  # never logged in: nothing to sign out
    assert guac.requests[-1] == "DELETE /guacamole/api/session"


def test_no_log_record_carries_the_password_the_key_or_a_token(
    guac: FakeGuacamole, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="httpx")  # a server command run in-process earlier quietened it
    with caplog.at_level(logging.DEBUG):
        client = GuacamoleGateway(guac.url, "guacadmin", ADMIN_PASSWORD)
        made = client.ensure_connection(target())
        guac.expire_tokens()
        client.ensure_connection(dataclasses.replace(target(made.environment_id), port=2299))
        client.delete_connection(made.environment_id)
        client.close()
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "HTTP Request" in logged, "httpx's request log was captured"
    assert len(guac.issued_tokens) == 2
    for secret in (ADMIN_PASSWORD, "secret-key-body", *guac.issued_tokens):
        assert secret not in logged
