"""First-run state a deployment needs: a persistent token-signing key and a platform administrator."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, text

from remotegpu.core.accounts.users import register_user
from remotegpu.core.environments.states import UserRole

DEV_ADMIN_EMAIL = "admin@remotegpu.local"


def _write_private(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(value + "\n")


def persistent_secret(path: Path, generate: Callable[[], str] = lambda: secrets.token_urlsafe(48)) -> str:
    """The secret stored at `path` (mode 0600), made by `generate` on first use, so it survives restarts."""
    if path.exists():
        return path.read_text().strip()
    value = generate()
    _write_private(path, value)
    return value


def ensure_admin(engine: Engine, email: str, username: str, password_file: Path) -> bool:
    """Create the platform admin `email` with a random password written to `password_file` (0600),
    unless the user exists. Returns whether it was created."""
    with engine.begin() as connection:
        exists = connection.execute(text("SELECT 1 FROM users WHERE email = :e"), {"e": email}).scalar()
        if exists:
            return False
        password = secrets.token_urlsafe(18)
        register_user(connection, email=email, username=username, password=password, role=UserRole.ADMIN)
    _write_private(password_file, password)
    return True
