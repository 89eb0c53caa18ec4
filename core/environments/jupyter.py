"""Jupyter access: the per-environment token, where it is kept, and what a missing `jupyter` means.

The reconciler generates the token once (`secrets.token_urlsafe(32)`), keeps it in the secrets store in
the environment's workspace scope (`env-<id>-jupyter-token`) and writes it into the environment's Secret
`env-<id>-jupyter`, which the pod reads as `JUPYTER_TOKEN`; it goes when the environment is deleted. The
access view reads it back for those entitled to see it. The value never enters a log line, an event or
an exception: only paths are named.
"""

from __future__ import annotations

import secrets
import uuid

from remotegpu.core.secrets.store import SecretNotFoundError, SecretPath, SecretScope, SecretStore

JUPYTER_UNAVAILABLE = "JupyterUnavailable"
"""The condition a running environment gets when its image has no `jupyter`."""
JUPYTER_UNAVAILABLE_MESSAGE = (
    "the image has no jupyter: use an image with Jupyter (e.g. jupyter/base-notebook or any image with"
    " `pip install jupyterlab`), or drop `jupyter` from access"
)


def jupyter_token_path(workspace_id: uuid.UUID, environment_id: uuid.UUID) -> SecretPath:
    """Where an environment's Jupyter token is kept: its workspace's scope, named after it."""
    return SecretPath(SecretScope.workspace(workspace_id), f"env-{environment_id}-jupyter-token")


def ensure_jupyter_token(store: SecretStore, workspace_id: uuid.UUID, environment_id: uuid.UUID) -> str:
    """The environment's token, generated and stored on first use; the same value every later call.

    One worker holds an environment's lease at a time, so two steps never generate concurrently."""
    path = jupyter_token_path(workspace_id, environment_id)
    try:
        value = store.get(path)
    except SecretNotFoundError:
        token = secrets.token_urlsafe(32)
        store.put(path, token)
        return token
    return value if isinstance(value, str) else value.decode()


def read_jupyter_token(store: SecretStore, workspace_id: uuid.UUID, environment_id: uuid.UUID) -> str | None:
    """The environment's token, or None when the reconciler has not generated one yet."""
    try:
        value = store.get(jupyter_token_path(workspace_id, environment_id))
    except SecretNotFoundError:
        return None
    return value if isinstance(value, str) else value.decode()


def forget_jupyter_token(store: SecretStore, workspace_id: uuid.UUID, environment_id: uuid.UUID) -> bool:
    """Delete the environment's token (it is being deleted); whether there was one."""
    return store.delete(jupyter_token_path(workspace_id, environment_id))
