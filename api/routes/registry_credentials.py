"""The platform's registry credentials, for platform admins: set them, and see which registries have some.

The credentials are written, never read back: `PUT` answers 204 with no body, and `GET` names the
registries only. The body is a Docker config JSON (`~/.docker/config.json` form, `{"auths": {...}}`),
checked in core, whose errors name the field and never echo a value.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Router, delete, get, put
from litestar.params import FromPath, FromQuery, JSONBody

from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.openapi import answers
from remotegpu.core.secrets.registry_credentials import (
    configured_registries,
    remove_registry_credentials,
    set_registry_credentials,
)


class RegistriesOut(msgspec.Struct):
    """The registries the platform has pull credentials for (the credentials themselves are never shown)."""

    registries: list[str]


@put("/registry-credentials", status_code=204, sync_to_thread=True, opt=answers(403, 503))
def set_credentials(
    data: JSONBody[dict[str, Any]], request: AnyRequest, api: Api, merge: FromQuery[bool] = False
) -> None:
    """Set the registry credentials every environment's image pull Secret carries (a Docker config JSON
    with `auths`); with `merge=true` the registries given are added to those configured."""
    with api.acting(request, admin=True) as (connection, principal):
        set_registry_credentials(connection, principal, api.secrets, data, merge=merge)


@get("/registry-credentials", sync_to_thread=True, opt=answers(403, 503))
def registries(request: AnyRequest, api: Api) -> RegistriesOut:
    """Which registries have credentials (no secret is returned)."""
    with api.acting(request, admin=True) as (_connection, principal):
        return RegistriesOut(configured_registries(principal, api.secrets))


@delete("/registry-credentials/{registry:str}", status_code=204, sync_to_thread=True, opt=answers(403, 503))
def remove_credentials(registry: FromPath[str], request: AnyRequest, api: Api) -> None:
    """Forget one registry's credentials (done already when it has none)."""
    with api.acting(request, admin=True) as (connection, principal):
        remove_registry_credentials(connection, principal, api.secrets, registry)


router = Router(
    "/", route_handlers=[set_credentials, registries, remove_credentials], tags=["registry credentials"]
)
