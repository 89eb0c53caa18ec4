"""A signed-in API client, and which workspace a command means: what every client command starts from."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.core.platform.settings import load_settings
from remotegpu.ops.api_client import ApiClient, load_profile


@contextlib.contextmanager
def signed_in_client() -> Iterator[ApiClient]:
    """A client with the saved or configured token; every command but `register` and `login` needs one."""
    client = ApiClient.from_settings(load_settings())
    if not client.signed_in:
        client.close()
        raise RemoteGPUError(f"not signed in to {client.server}: sign in first (`remotegpu login`)")
    try:
        yield client
    finally:
        client.close()


def chosen_workspace(explicit: str | None) -> str | None:
    """The workspace given with `-w`, else the one `remotegpu workspaces use` saved (None: all of yours)."""
    return explicit or load_profile().workspace


def required_workspace(workspace: str | None) -> str:
    """As `chosen_workspace`, but a command that acts on one workspace refuses to guess."""
    chosen = chosen_workspace(workspace)
    if chosen is None:
        raise RemoteGPUError("no workspace given: pass -w NAME or run `remotegpu workspaces use NAME`")
    return chosen


def workspace_id(client: ApiClient, reference: str) -> str:
    """The id of the workspace named (or with the id) `reference`, among those the caller sees."""
    if is_uuid(reference):
        return reference
    for item in client.items("/workspaces"):
        if item["name"] == reference:
            return str(item["id"])
    raise RemoteGPUError(f"workspace {reference!r} not found (see `remotegpu get workspaces`)")


def is_uuid(value: str) -> bool:
    """Whether a reference on the command line is an id rather than a name."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
