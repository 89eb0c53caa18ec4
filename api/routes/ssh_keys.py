"""The caller's SSH public keys: `/users/me/ssh-keys`. Keys are validated in core; answers carry the
public line and its fingerprint (public keys are not secrets); a pasted private key is refused (422)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import msgspec
from litestar import Router, delete, get, post
from litestar.params import FromPath, JSONBody

from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.openapi import answers
from remotegpu.core.accounts.ssh_keys import SshKeyRow, add_ssh_key, list_ssh_keys, remove_ssh_key


class SshKeyIn(msgspec.Struct, forbid_unknown_fields=True):
    """A public key as in `~/.ssh/id_ed25519.pub`; `name` defaults to the key's comment."""

    public_key: Annotated[str, msgspec.Meta(min_length=1, max_length=16_384)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


class SshKeyOut(msgspec.Struct):
    """A stored key."""

    id: uuid.UUID
    name: str
    type: str
    fingerprint: str
    public_key: str
    created_at: dt.datetime


def _out(row: SshKeyRow) -> SshKeyOut:
    return SshKeyOut(row.id, row.name, row.key_type, row.fingerprint, row.public_key, row.created_at)


@post("/", status_code=201, sync_to_thread=True, opt=answers(409))
def add(data: JSONBody[SshKeyIn], request: AnyRequest, api: Api) -> SshKeyOut:
    """Add a public key; it is authorised in your environments with SSH access within one resync. 409 if
    you already added it; 422 for anything but an OpenSSH public key (a private key is never stored)."""
    with api.acting(request) as (connection, principal):
        return _out(add_ssh_key(connection, principal.user_id, data.public_key, data.name))


@get("/", sync_to_thread=True)
def list_mine(request: AnyRequest, api: Api) -> list[SshKeyOut]:
    """Your public keys, oldest first."""
    with api.acting(request) as (connection, principal):
        return [_out(row) for row in list_ssh_keys(connection, principal.user_id)]


@delete("/{key_id:uuid}", status_code=200, sync_to_thread=True)
def remove(key_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> SshKeyOut:
    """Remove one of your keys; running environments stop accepting it within one resync."""
    with api.acting(request) as (connection, principal):
        return _out(remove_ssh_key(connection, principal.user_id, key_id))


router = Router("/users/me/ssh-keys", route_handlers=[add, list_mine, remove], tags=["ssh-keys"])
