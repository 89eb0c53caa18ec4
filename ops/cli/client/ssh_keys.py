"""`remotegpu ssh-keys add FILE | list | remove FINGERPRINT-or-ID`: your SSH public keys."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.ops.cli.client.options import Output
from remotegpu.ops.cli.client.session import signed_in_client
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.output import OutputFormat, emit

ssh_keys_app = typer.Typer(
    help="Your SSH public keys, authorised in your environments.", no_args_is_help=True
)

_COLUMNS: list[tuple[str, Any]] = [
    ("ID", lambda k: k["id"]),
    ("NAME", lambda k: k["name"]),
    ("TYPE", lambda k: k["type"]),
    ("FINGERPRINT", lambda k: k["fingerprint"]),
]


@ssh_keys_app.command("add")
def ssh_keys_add(
    path: Annotated[Path, typer.Argument(help="The public key file, e.g. ~/.ssh/id_ed25519.pub.")],
    name: Annotated[str | None, typer.Option(help="A name for it (default: the key's comment).")] = None,
) -> None:
    """Add a public key. Only the .pub file: a private key is refused and never sent on."""
    try:
        text = path.expanduser().read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise RemoteGPUError(f"cannot read {path}: {error.__class__.__name__}") from None
    if "PRIVATE KEY" in text:
        # refused here already, so the private key does not even leave this machine
        raise RemoteGPUError(
            f"{path} is a private key; pass the public key file instead ({path}.pub). Nothing was sent"
        )
    with signed_in_client() as client:
        body: dict[str, Any] = {"public_key": text}
        if name:
            body["name"] = name
        added = client.post("/users/me/ssh-keys", body)
    console.print(f"ssh-key/{added['name']} added ({added['fingerprint']})")


@ssh_keys_app.command("list")
def ssh_keys_list(output: Output = OutputFormat.TABLE) -> None:
    """Your public keys and their fingerprints."""
    with signed_in_client() as client:
        items = client.get("/users/me/ssh-keys")
    emit(console, items, output, _COLUMNS)


@ssh_keys_app.command("remove")
def ssh_keys_remove(
    key: Annotated[str, typer.Argument(help="The key's fingerprint (SHA256:…) or id, from `ssh-keys list`.")],
) -> None:
    """Remove a key; running environments stop accepting it within one resync."""
    with signed_in_client() as client:
        key_id = _key_id(client.get("/users/me/ssh-keys"), key)
        removed = client.request("DELETE", f"/users/me/ssh-keys/{key_id}")
    console.print(f"ssh-key/{removed['name']} removed ({removed['fingerprint']})")


def _key_id(keys: list[dict[str, Any]], reference: str) -> str:
    try:
        wanted = str(uuid.UUID(reference))
    except ValueError:
        wanted = reference
    for key in keys:
        if wanted in (key["id"], key["fingerprint"]):
            return str(key["id"])
    raise RemoteGPUError(f"you have no SSH key {reference!r} (see `remotegpu ssh-keys list`)")
