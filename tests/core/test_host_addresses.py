"""Host addresses: validating an admin's override, URL hosts, and what inventory sync stores."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from remotegpu.core.accounts.users import Principal
from remotegpu.core.environments.states import UserRole
from remotegpu.core.inventory import control
from remotegpu.core.inventory.addresses import parse_public_address, url_host
from remotegpu.core.inventory.sync import ObservedNode, sync_inventory
from remotegpu.core.platform.errors import ForbiddenError, InvalidInputError
from remotegpu.tests.allocation_world import make_user

GIB = 1 << 30


def _node(name: str, address: str | None, source: str | None) -> ObservedNode:
    return ObservedNode(
        name, True, 1, "H100", 80 * GIB, (), 8000, 64 * GIB, {}, address=address, address_source=source
    )


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("gpu1.lab.example.org", "gpu1.lab.example.org"),
        ("  gpu1  ", "gpu1"),
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8::7", "2001:db8::7"),
        ("[2001:db8::7]", "2001:db8::7"),
        (None, None),
    ],
)
def test_a_hostname_or_ip_literal_is_accepted_as_a_public_address(
    given: str | None, stored: str | None
) -> None:
    assert parse_public_address(given) == stored


@pytest.mark.parametrize(
    "given",
    [
        "",
        "gpu_1.example.org",
        "http://gpu1.example.org",
        "gpu1..example.org",
        "-gpu1.org",
        "1.2.3",
        "a b",
        "0.0.0.0",
        "::",
        "224.0.0.1",
    ],
)
def test_anything_else_is_refused_naming_the_field_and_the_fix(given: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        parse_public_address(given)
    assert refused.value.field == "$.public_address"
    assert "hostname" in refused.value.detail or "DNS name" in refused.value.detail


def test_an_ipv6_literal_is_bracketed_in_urls_and_nothing_else_is() -> None:
    assert [url_host(a) for a in ("2001:db8::7", "10.0.0.1", "gpu1.example.org")] == [
        "[2001:db8::7]",
        "10.0.0.1",
        "gpu1.example.org",
    ]


def test_inventory_sync_stores_the_observed_address_and_never_touches_the_admin_s_override(
    db: Engine,
) -> None:
    with db.begin() as connection:
        admin_id = make_user(connection, "root")
        admin = Principal(admin_id, "root", "root@example.org", UserRole.ADMIN)
        (host,) = sync_inventory(connection, [_node("n1", "10.0.0.1", "InternalIP")])
    with db.begin() as connection:
        shown = control.set_public_address(connection, admin, host, "gpu1.lab.example.org")
        assert (shown.address, shown.address_source, shown.public_address, shown.effective_address) == (
            "10.0.0.1",
            "InternalIP",
            "gpu1.lab.example.org",
            "gpu1.lab.example.org",
        )
    with db.begin() as connection:
        sync_inventory(connection, [_node("n1", "203.0.113.1", "ExternalIP")])
        shown = control.set_public_address(connection, admin, host, "gpu1.lab.example.org")  # unchanged
        assert (shown.address, shown.address_source, shown.public_address) == (
            "203.0.113.1",
            "ExternalIP",
            "gpu1.lab.example.org",
        )
        cleared = control.set_public_address(connection, admin, host, None)
        assert (cleared.public_address, cleared.effective_address) == (None, "203.0.113.1")
    with db.begin() as connection:
        sync_inventory(connection, [_node("n1", None, None)])
        row = connection.execute(text("SELECT address, public_address FROM hosts")).one()
        assert tuple(row) == (None, None)
        reasons = connection.execute(
            text("SELECT reason, data->>'public_address' FROM events WHERE kind = 'api' ORDER BY seq")
        ).all()
    assert [tuple(r) for r in reasons] == [
        ("HostAddressSet", "gpu1.lab.example.org"),
        ("HostAddressCleared", None),
    ], "one audit event per change; setting the same address again records nothing"


def test_only_platform_admins_set_a_public_address(db: Engine) -> None:
    with db.begin() as connection:
        user = Principal(make_user(connection, "alice"), "alice", "alice@example.org", UserRole.USER)
        (host,) = sync_inventory(connection, [_node("n1", "10.0.0.1", "InternalIP")])
        with pytest.raises(ForbiddenError):
            control.set_public_address(connection, user, host, "gpu1.lab.example.org")
        assert connection.execute(text("SELECT public_address FROM hosts")).scalar() is None
