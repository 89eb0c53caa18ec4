"""The assets side of a fake Jumpserver: organisations, platforms and hosts, validated and written as
Jumpserver v3's serializers validate and write them.

Followed from jumpserver/jumpserver at tag v3.10.23:
- hosts: `apps/assets/serializers/asset/common.py` + `host.py` (`AssetSerializer`: name, address, `platform`
  as `{id, name}`, `nodes` defaulting to the organisation's root node, `protocols` `[{name, port}]`
  defaulting to the platform's own and checked against its required ones — "Protocol is required: ssh" —
  and the port range), `apps/assets/models/asset/common.py` (name unique per organisation, answered
  `{"name": ["This field must be unique."]}` by `apps/common/validators.py: ProjectUniqueValidator`),
  `apps/assets/api/asset/asset.py` (`AssetFilterSet`: exact `id`, `name`, `address`, `is_active`,
  `platform`; `search` over name, address and comment), `apps/assets/api/platform.py`;
- organisations: `apps/orgs/utils.py: get_org_from_request` (`?oid=`, then `X-JMS-ORG`; an unknown one is
  the default organisation).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from remotegpu.ops.fakes.jumpserver_fields import (
    REQUIRED,
    UNIQUE,
    ApiError,
    boolean,
    jms_time,
    matches,
    related_ids,
    text,
)

DEFAULT_ORG = "00000000-0000-0000-0000-000000000002"


@dataclass(frozen=True)
class FakePlatform:
    id: int
    name: str
    type: str
    protocols: tuple[tuple[str, int, bool], ...]
    """(name, port, required) as the platform's protocol settings list them; the first is primary."""


PLATFORMS = (
    FakePlatform(1, "Linux", "linux", (("ssh", 22, True), ("sftp", 22, False))),
    FakePlatform(2, "Unix", "unix", (("ssh", 22, True), ("sftp", 22, False))),
    FakePlatform(5, "Windows", "windows", (("rdp", 3389, True),)),
)


@dataclass
class FakeHost:
    id: str
    org_id: str
    name: str
    address: str
    platform: FakePlatform
    protocols: list[tuple[str, int]]
    node_ids: list[str]
    comment: str
    is_active: bool
    created: dt.datetime

    def port(self, protocol: str = "ssh") -> int | None:
        return next((port for name, port in self.protocols if name == protocol), None)


class Assets:
    """Organisations, platforms and hosts; the server holds its lock around every call."""

    def __init__(self, now: Callable[[], dt.datetime]) -> None:
        self.now = now
        self.orgs: dict[str, str] = {DEFAULT_ORG: "Default"}
        self.root_nodes: dict[str, str] = {DEFAULT_ORG: str(uuid.uuid4())}
        self.hosts: dict[str, FakeHost] = {}

    def add_org(self, name: str) -> str:
        org_id = str(uuid.uuid4())
        self.orgs[org_id] = name
        self.root_nodes[org_id] = str(uuid.uuid4())
        return org_id

    def org_of(self, requested: str | None) -> str:
        if requested and requested.lower() == "default":
            return DEFAULT_ORG
        return requested if requested and requested in self.orgs else DEFAULT_ORG

    def org_fields(self, org_id: str) -> dict[str, str]:
        return {"org_id": org_id, "org_name": self.orgs[org_id]}

    # Platforms

    def list_platforms(self, query: dict[str, str]) -> list[dict[str, Any]]:
        found = [p for p in PLATFORMS if matches(query, "name", p.name) and matches(query, "type", p.type)]
        if search := query.get("search"):
            found = [p for p in found if search.lower() in p.name.lower()]
        return [platform_json(p) for p in found]

    @staticmethod
    def platform(key: str) -> FakePlatform:
        """By id, or by name (`AssetPlatformViewSet.get_object`)."""
        found = next((p for p in PLATFORMS if key in (str(p.id), p.name)), None)
        if found is None:
            raise ApiError.not_found("Platform")
        return found

    # Hosts

    def list_hosts(self, org_id: str, query: dict[str, str]) -> list[dict[str, Any]]:
        found = [
            h
            for h in self.hosts.values()
            if h.org_id == org_id
            and matches(query, "id", h.id)
            and matches(query, "name", h.name)
            and matches(query, "address", h.address)
            and matches(query, "is_active", h.is_active)
            and query.get("platform") in (None, "", str(h.platform.id), h.platform.name)
        ]
        if search := query.get("search", "").lower():
            found = [h for h in found if any(search in v.lower() for v in (h.name, h.address, h.comment))]
        return [self.host_json(h) for h in found]

    def host(self, org_id: str, host_id: str) -> FakeHost:
        host = self.hosts.get(host_id)
        if host is None or host.org_id != org_id:
            raise ApiError.not_found("Host")
        return host

    def create_host(self, org_id: str, data: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        name = text(data, "name", errors, required=True)
        address = text(data, "address", errors, required=True, max_length=767)
        platform = self._platform_field(data, errors, required=True)
        protocols = self._protocols(data, platform, errors) if "protocols" in data else None
        node_ids = self._nodes(org_id, data, errors)
        comment = text(data, "comment", errors, blank=True, max_length=1024) or ""
        is_active = boolean(data, "is_active", errors, default=True)
        ApiError.raise_if(errors)
        assert name is not None
        assert address is not None
        assert platform is not None
        self._unique_name(org_id, name, None)
        host = FakeHost(
            id=str(uuid.uuid4()),
            org_id=org_id,
            name=name,
            address=address,
            platform=platform,
            protocols=protocols if protocols is not None else [(n, p) for n, p, _ in platform.protocols],
            node_ids=node_ids or [self.root_nodes[org_id]],
            comment=comment,
            is_active=is_active,
            created=self.now(),
        )
        self.hosts[host.id] = host
        return self.host_json(host)

    def update_host(self, host: FakeHost, data: dict[str, Any]) -> dict[str, Any]:
        """A partial update; given `protocols` replace the host's (drf-writable-nested)."""
        errors: dict[str, Any] = {}
        name = text(data, "name", errors)
        address = text(data, "address", errors, max_length=767)
        platform = self._platform_field(data, errors, required=False) or host.platform
        protocols = self._protocols(data, platform, errors) if "protocols" in data else None
        node_ids = self._nodes(host.org_id, data, errors)
        comment = text(data, "comment", errors, blank=True, max_length=1024)
        is_active = boolean(data, "is_active", errors, default=host.is_active)
        ApiError.raise_if(errors)
        if name is not None:
            self._unique_name(host.org_id, name, host.id)
            host.name = name
        host.address = address if address is not None else host.address
        host.platform = platform
        host.protocols = protocols if protocols is not None else host.protocols
        host.node_ids = node_ids or host.node_ids
        host.comment = comment if comment is not None else host.comment
        host.is_active = is_active
        return self.host_json(host)

    def delete_host(self, host: FakeHost) -> None:
        del self.hosts[host.id]

    def _unique_name(self, org_id: str, name: str, own_id: str | None) -> None:
        if any(h.org_id == org_id and h.name == name and h.id != own_id for h in self.hosts.values()):
            raise ApiError(400, {"name": [UNIQUE]})

    @staticmethod
    def _platform_field(
        data: dict[str, Any], errors: dict[str, Any], *, required: bool
    ) -> FakePlatform | None:
        if "platform" not in data:
            if required:
                # Without protocols the serializer looks the platform up before it validates any field.
                errors["platform"] = [REQUIRED] if "protocols" in data else "Platform not exist"
            return None
        value = data["platform"]
        key = (value.get("id") or value.get("pk")) if isinstance(value, dict) else value
        platform = next((p for p in PLATFORMS if str(p.id) == str(key)), None)
        if platform is None:
            errors["platform"] = [f'Invalid pk "{key}" - object does not exist.']
        return platform

    @staticmethod
    def _protocols(
        data: dict[str, Any], platform: FakePlatform | None, errors: dict[str, Any]
    ) -> list[tuple[str, int]]:
        raw = data["protocols"]
        if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
            errors["protocols"] = [f'Expected a list of items but got type "{type(raw).__name__}".']
            return []
        protocols: dict[str, int] = {}
        for item in raw:
            port = item.get("port", 0)
            if not isinstance(item.get("name"), str) or isinstance(port, bool) or not isinstance(port, int):
                errors["protocols"] = [{"port": ["A valid integer is required."]}]
                return []
            if not 0 <= port <= 65535:
                errors["protocols"] = [f"{item['name']}: port out of range (0-65535)"]
                return []
            protocols[item["name"]] = port
        required = [n for n, _, needed in (platform.protocols if platform else ()) if needed]
        if missing := [n for n in required if n not in protocols]:
            errors["protocols"] = [f"Protocol is required: {', '.join(missing)}"]
        return list(protocols.items())

    def _nodes(self, org_id: str, data: dict[str, Any], errors: dict[str, Any]) -> list[str]:
        return related_ids(data, "nodes", errors, known={self.root_nodes[org_id]})

    def host_json(self, host: FakeHost) -> dict[str, Any]:
        org_name = self.orgs[host.org_id]
        return {
            "id": host.id,
            "name": host.name,
            "address": host.address,
            "is_active": host.is_active,
            "comment": host.comment,
            "domain": None,
            "platform": {"id": host.platform.id, "name": host.platform.name},
            "nodes": [{"id": i, "name": org_name} for i in host.node_ids],
            "labels": [],
            "protocols": [{"name": name, "port": port} for name, port in host.protocols],
            "nodes_display": [f"/{org_name}"],
            "category": {"value": "host", "label": "Host"},
            "type": {"value": host.platform.type, "label": host.platform.name},
            "connectivity": {"value": "-", "label": "Unknown"},
            "date_verified": None,
            "created_by": "Administrator",
            "date_created": jms_time(host.created),
            "gathered_info": {},
            **self.org_fields(host.org_id),
        }


def platform_json(platform: FakePlatform) -> dict[str, Any]:
    return {
        "id": platform.id,
        "name": platform.name,
        "category": {"value": "host", "label": "Host"},
        "type": {"value": platform.type, "label": platform.name},
        "internal": True,
        "protocols": [
            {"name": name, "port": port, "primary": index == 0, "required": required, "default": not required}
            for index, (name, port, required) in enumerate(platform.protocols)
        ],
    }
