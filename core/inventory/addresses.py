"""The address users reach a host by: what the node reports, what an annotation or an admin says.

A Kubernetes node reports `status.addresses` (`ExternalIP`, `InternalIP`, `Hostname`, ...). The node's
*name* is not an address anyone can be expected to resolve, so SSH commands and URLs use, in order:

1. the admin's override (`hosts.public_address`, set with `PUT /hosts/{id}`),
2. the node annotation `remotegpu.io/public-address` (for clusters managed as code),
3. the node's `ExternalIP`, then its `InternalIP`,
4. its `Hostname` address, as a last resort (recorded with source `Hostname` so admins see it is a
   guess), and the node name when the node reports nothing at all.

Inventory sync stores 2–4 as `hosts.address` with its source in `hosts.address_source`; the override is
its own column so a sync never overwrites what an admin set. `EFFECTIVE_ADDRESS_SQL` is the one place
the precedence between the two columns is written.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from remotegpu.core.platform.errors import InvalidInputError

PUBLIC_ADDRESS_ANNOTATION = "remotegpu.io/public-address"
"""A node annotation naming the address users reach the node by; it wins over the node's own addresses."""

EFFECTIVE_ADDRESS_SQL = "coalesce(h.public_address, h.address, h.name)"
"""The effective address of host `h` in SQL: admin override > observed (annotation > IPs) > node name."""


class AddressSource(enum.StrEnum):
    """Where a host's observed address came from."""

    ANNOTATION = "annotation"
    EXTERNAL_IP = "ExternalIP"
    INTERNAL_IP = "InternalIP"
    HOSTNAME = "Hostname"


# Node address types in order of preference (after the annotation).
_PREFERRED_TYPES = (AddressSource.EXTERNAL_IP, AddressSource.INTERNAL_IP, AddressSource.HOSTNAME)

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_FIX = "give a DNS name (e.g. gpu1.lab.example.org) or an IPv4/IPv6 address, or null to clear the override"


def node_address(
    addresses: Sequence[Mapping[str, Any]], annotations: Mapping[str, str]
) -> tuple[str, AddressSource] | None:
    """The address a node is reached by and where it came from; None when it reports none.

    An annotation that is not a valid address is ignored (the node's own addresses are used), since a
    typo in a label must not make every SSH command wrong.
    """
    annotated = (annotations.get(PUBLIC_ADDRESS_ANNOTATION) or "").strip()
    if annotated and is_valid_address(annotated):
        return annotated, AddressSource.ANNOTATION
    for kind in _PREFERRED_TYPES:
        for entry in addresses:
            if entry.get("type") == kind.value and entry.get("address"):
                return str(entry["address"]), kind
    return None


def is_valid_address(value: str) -> bool:
    """A DNS hostname (RFC 1123 labels, 253 characters at most) or an IPv4/IPv6 literal."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253 or name.replace(".", "").isdigit():
        return False
    return all(_LABEL.match(label) for label in name.split("."))


def parse_public_address(value: str | None, field: str = "$.public_address") -> str | None:
    """An admin's override as stored: trimmed, brackets of an IPv6 literal removed, None to clear.

    Raises InvalidInputError naming `field` and the fix for anything that is not a hostname or an IP.
    """
    if value is None:
        return None
    cleaned = value.strip()
    if cleaned.startswith("[") and cleaned.endswith("]"):
        cleaned = cleaned[1:-1]
    if not cleaned:
        raise InvalidInputError(field, f"is empty; {_FIX}")
    if not is_valid_address(cleaned):
        raise InvalidInputError(field, f"{value!r} is neither a hostname nor an IP address; {_FIX}")
    if _is_unroutable(cleaned):
        raise InvalidInputError(
            field, f"{value!r} is an address nobody can connect to (unspecified or multicast); {_FIX}"
        )
    return cleaned


def _is_unroutable(value: str) -> bool:
    """0.0.0.0, ::, and multicast: a listening or group address, never one a user's SSH can reach."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return address.is_unspecified or address.is_multicast


def url_host(address: str) -> str:
    """The address as the host part of a URL: an IPv6 literal in brackets, anything else as is."""
    try:
        return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    except ValueError:
        return address
