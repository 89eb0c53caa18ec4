"""The Jumpserver gateway against the fake Jumpserver over HTTP: one host, account and permission per
environment however often (or however interrupted) `ensure_connection` runs, kept up to date, removed on
delete; pagination, token expiry, outages and a refused admin login handled, never quoting a secret."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from remotegpu.core.environments.states import AccessKind
from remotegpu.core.gateways import jumpserver_api
from remotegpu.core.gateways.gateway import (
    GatewayTarget,
    GatewayUnavailableError,
    GatewayUser,
    connection_name,
)
from remotegpu.core.gateways.jumpserver import JumpserverGateway
from remotegpu.ops.fakes.jumpserver import FakeJumpserver

ALICE = GatewayUser("alice", "alice@lab.example", "Alice A.")
BOB = GatewayUser("bob", "bob@lab.example", "Bob B.")


def private_key() -> str:
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        .decode()
    )


KEY = private_key()


def target(
    environment_id: uuid.UUID | None = None,
    *,
    hostname: str = "10.0.0.7",
    port: int = 30022,
    username: str = "user",
    key: str = KEY,
    users: tuple[GatewayUser, ...] = (ALICE, BOB),
) -> GatewayTarget:
    return GatewayTarget(
        environment_id=environment_id or uuid.uuid4(),
        environment_name="train",
        workspace_id=uuid.uuid4(),
        hostname=hostname,
        port=port,
        username=username,
        private_key=key,
        users=users,
    )


@pytest.fixture
def fake() -> Iterator[FakeJumpserver]:
    with FakeJumpserver() as server:
        server.add_user("alice", email="alice@lab.example", name="Alice A.")
        yield server
        assert server.unexpected == [], "the gateway made a call the fake Jumpserver does not implement"


@pytest.fixture
def gateway(fake: FakeJumpserver) -> Iterator[JumpserverGateway]:
    client = JumpserverGateway(fake.url, "admin", fake.admin_password)
    yield client
    client.close()


def admin_token(fake: FakeJumpserver) -> str:
    login = httpx.post(
        f"{fake.url}/api/v1/authentication/auth/", json={"username": "admin", "password": fake.admin_password}
    )
    return str(login.json()["token"])


def writes(fake: FakeJumpserver) -> list[str]:
    return [r for r in fake.requests if not r.startswith("GET ")]


def test_ensure_twice_makes_one_host_account_and_permission(
    fake: FakeJumpserver, gateway: JumpserverGateway
) -> None:
    wanted = target()
    connection = gateway.ensure_connection(wanted)

    (host,) = fake.hosts()
    assert host.name == connection_name(wanted.environment_id)
    assert (host.address, host.port(), host.platform.name) == ("10.0.0.7", 30022, "Linux")
    assert connection.kind is AccessKind.JUMPSERVER
    assert connection.connection_id == host.id
    assert connection.url == f"{fake.url}/luna/?login_to={host.id}&oid=00000000-0000-0000-0000-000000000002"
    (account,) = fake.accounts()
    assert (account.asset_id, account.username, account.secret_type, account.secret) == (
        host.id,
        "user",
        "ssh_key",
        KEY,
    )
    (permission,) = fake.permissions()
    assert permission.name == host.name
    assert permission.asset_ids == [host.id]
    assert permission.accounts == ["user"]
    assert permission.protocols == ["ssh"]
    assert permission.actions == 1  # connect
    assert sorted(fake.username_of(u) for u in permission.user_ids) == ["alice", "bob"]
    bob = next(u for u in fake.users() if u.username == "bob")
    assert (bob.email, bob.name) == ("bob@lab.example", "Bob B."), "a missing Jumpserver user is created"

    before = len(writes(fake))
    assert gateway.ensure_connection(wanted) == connection
    assert writes(fake)[before:] == [], "an up-to-date connection is left as it is"
    assert (len(fake.hosts()), len(fake.accounts()), len(fake.permissions())) == (1, 1, 1)
    assert fake.accounts()[0].version == 1
    assert len([u for u in fake.users() if u.username == "bob"]) == 1


class LosesAnswer(httpx.BaseTransport):
    """Sends every request, but loses the answer to call number `lose_at`: a crash right after the write."""

    def __init__(self, lose_at: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.calls = 0
        self.lose_at = lose_at

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.calls += 1
        if self.calls == self.lose_at:
            response.close()
            raise httpx.ReadError("connection lost", request=request)
        return response


def test_a_step_interrupted_anywhere_still_leaves_one_of_each(
    fake: FakeJumpserver, gateway: JumpserverGateway
) -> None:
    def fresh(number: int) -> GatewayTarget:  # with a user Jumpserver does not know yet
        return target(users=(ALICE, GatewayUser(f"new{number}", f"new{number}@lab.example", "New")))

    counting = LosesAnswer(lose_at=0)
    JumpserverGateway(fake.url, "admin", fake.admin_password, transport=counting).ensure_connection(fresh(0))
    assert counting.calls > 8

    for lose_at in range(1, counting.calls + 1):
        wanted = fresh(lose_at)
        interrupted = JumpserverGateway(
            fake.url, "admin", fake.admin_password, transport=LosesAnswer(lose_at)
        )
        with pytest.raises(GatewayUnavailableError, match="ReadError"):
            interrupted.ensure_connection(wanted)
        interrupted.close()
        gateway.ensure_connection(wanted)
        name = connection_name(wanted.environment_id)
        hosts = [h for h in fake.hosts() if h.name == name]
        assert len(hosts) == 1, f"lost answer {lose_at}"
        assert len([a for a in fake.accounts() if a.asset_id == hosts[0].id]) == 1, f"lost answer {lose_at}"
        (permission,) = [p for p in fake.permissions() if p.name == name]
        assert sorted(fake.username_of(u) for u in permission.user_ids) == ["alice", f"new{lose_at}"]
        assert len([u for u in fake.users() if u.username == f"new{lose_at}"]) == 1, f"lost answer {lose_at}"


def test_a_moved_environment_or_a_new_key_updates_the_connection(
    fake: FakeJumpserver, gateway: JumpserverGateway
) -> None:
    environment = uuid.uuid4()
    first = gateway.ensure_connection(target(environment))
    assert gateway.ensure_connection(target(environment, port=31000)) == first
    assert [(h.address, h.port()) for h in fake.hosts()] == [("10.0.0.7", 31000)]
    assert gateway.ensure_connection(target(environment, hostname="10.0.0.8", port=31000)) == first
    assert [(h.address, h.port()) for h in fake.hosts()] == [("10.0.0.8", 31000)]
    assert fake.accounts()[0].version == 1, "the key did not change: not written again"

    new_key = private_key()
    gateway.ensure_connection(target(environment, hostname="10.0.0.8", port=31000, key=new_key))
    (account,) = fake.accounts()
    assert (account.secret, account.version) == (new_key, 2)

    gateway.ensure_connection(
        target(environment, hostname="10.0.0.8", port=31000, key=new_key, username="root")
    )
    (account,) = fake.accounts()
    assert (account.username, account.secret) == ("root", new_key)
    assert fake.permissions()[0].accounts == ["root"]


def test_the_permission_names_exactly_the_entitled_users(
    fake: FakeJumpserver, gateway: JumpserverGateway
) -> None:
    environment = uuid.uuid4()
    gateway.ensure_connection(target(environment))
    carol = fake.add_user("carol")
    permission = fake.permissions()[0]
    permission.user_ids.append(carol.id)  # someone widened it in Jumpserver's UI

    gateway.ensure_connection(target(environment, users=(ALICE,)))
    assert [fake.username_of(u) for u in fake.permissions()[0].user_ids] == ["alice"]
    gateway.ensure_connection(target(environment, users=()))
    assert fake.permissions()[0].user_ids == []
    assert {"alice", "bob", "carol"} <= {u.username for u in fake.users()}, "users are never deleted"


def test_delete_removes_everything_and_twice_is_fine(
    fake: FakeJumpserver, gateway: JumpserverGateway
) -> None:
    kept, gone = target(), target()
    gateway.ensure_connection(kept)
    gateway.ensure_connection(gone)
    gateway.delete_connection(gone.environment_id)
    assert [h.name for h in fake.hosts()] == [connection_name(kept.environment_id)]
    assert [p.name for p in fake.permissions()] == [connection_name(kept.environment_id)]
    assert len(fake.accounts()) == 1
    gateway.delete_connection(gone.environment_id)
    gateway.delete_connection(uuid.uuid4())
    assert gateway.connected_environments() == {kept.environment_id}


def test_connected_environments_follows_the_pages(
    fake: FakeJumpserver, gateway: JumpserverGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jumpserver_api, "PAGE_SIZE", 2)
    environments = {gateway.ensure_connection(target(users=())).environment_id for _ in range(5)}
    with httpx.Client(base_url=fake.url, headers={"Authorization": f"Bearer {admin_token(fake)}"}) as http:
        for name in ("remotegpu-not-a-uuid", "db-server"):
            http.post("/api/v1/assets/hosts/", json={"name": name, "address": "10.9.9.9", "platform": 1})
    before = len(fake.requests)
    assert gateway.connected_environments() == environments
    pages = [r for r in fake.requests[before:] if r.startswith("GET /api/v1/assets/hosts/")]
    assert len(pages) == 3


def test_an_expired_token_means_one_new_login(fake: FakeJumpserver, gateway: JumpserverGateway) -> None:
    gateway.ensure_connection(target())
    fake.expire_tokens()
    assert len(gateway.connected_environments()) == 1
    assert fake.logins == 2


def test_an_outage_is_unavailable_and_quotes_no_secret(
    fake: FakeJumpserver, gateway: JumpserverGateway
) -> None:
    gateway.connected_environments()  # logged in
    fake.fail_next(1)
    with pytest.raises(GatewayUnavailableError) as outage:
        gateway.ensure_connection(target())
    assert str(outage.value) == "Jumpserver find host: HTTP 503"
    fake.fail_next(1, status=None)
    with pytest.raises(
        GatewayUnavailableError, match="Jumpserver list hosts: RemoteProtocolError"
    ) as dropped:
        gateway.connected_environments()
    token = admin_token(fake)  # the live one: Jumpserver hands the same token out again
    for error in (outage.value, dropped.value):
        for secret in (fake.admin_password, KEY, "PRIVATE KEY", token):
            assert secret not in str(error)
            assert secret not in repr(error)
    assert fake.admin_password not in repr(gateway)

    with pytest.raises(GatewayUnavailableError, match="Jumpserver login: ConnectError"):
        JumpserverGateway("http://127.0.0.1:9", "admin", "pw", timeout=1.0).connected_environments()


def test_a_refused_admin_login_is_unavailable_and_not_retried_at_once(fake: FakeJumpserver) -> None:
    wrong = JumpserverGateway(fake.url, "admin", "not-the-password")
    for attempt in range(3):
        with pytest.raises(GatewayUnavailableError) as refused:
            wrong.ensure_connection(target())
        assert str(refused.value).startswith(
            "Jumpserver login as 'admin' refused (password_failed): check the admin username and password"
        )
        assert ("not tried again for" in str(refused.value)) == (attempt > 0)
        assert "not-the-password" not in str(refused.value)
    assert fake.failed_logins == 1, "a refused password is not tried again at once (Jumpserver locks after 7)"
    assert fake.hosts() == []

    fake.add_user("operator", password="operators-password")
    not_admin = JumpserverGateway(fake.url, "operator", "operators-password")
    with pytest.raises(GatewayUnavailableError, match=r"HTTP 403 .*lacks a Jumpserver permission"):
        not_admin.connected_environments()


def test_what_only_an_admin_can_fix_is_named(fake: FakeJumpserver, gateway: JumpserverGateway) -> None:
    lab = fake.add_org("Lab")
    fake.add_user("dora", orgs=(lab,))
    dora = GatewayUser("dora", "dora@lab.example", "Dora")
    with pytest.raises(GatewayUnavailableError, match="exists in another Jumpserver organisation"):
        gateway.ensure_connection(target(users=(dora,)))

    with pytest.raises(GatewayUnavailableError, match="no platform named 'Plan9'"):
        JumpserverGateway(fake.url, "admin", fake.admin_password, platform="Plan9").ensure_connection(
            target()
        )
    with pytest.raises(GatewayUnavailableError, match="not an OpenSSH private key"):
        gateway.ensure_connection(target(key="ssh-ed25519 AAAA… a public key"))


def test_the_configured_organisation_holds_the_connection(fake: FakeJumpserver) -> None:
    lab = fake.add_org("Lab")
    fake.add_user("alice-lab", orgs=(lab,))
    in_lab = JumpserverGateway(fake.url, "admin", fake.admin_password, org_id=lab)
    connection = in_lab.ensure_connection(target(users=(GatewayUser("alice-lab", "a@lab.example", "A"),)))
    assert [h.id for h in fake.hosts(lab)] == [connection.connection_id]
    assert fake.hosts() == []
    assert connection.url.endswith(f"&oid={lab}")
    in_lab.close()
