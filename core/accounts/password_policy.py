"""The password policy every new password meets (registration, change, reset): long enough, not one of
the most common passwords, not one repeated character, not built on the user's own name or e-mail."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from remotegpu.core.platform.errors import InvalidInputError

MIN_PASSWORD_LENGTH = 10


@cache
def _common_passwords() -> frozenset[str]:
    listed = files("remotegpu.core.accounts").joinpath("common_passwords.txt").read_text()
    return frozenset(line for line in listed.splitlines() if line and not line.startswith("#"))


def check_password_policy(password: str, *, field: str, email: str, username: str) -> None:
    """Refuse a password that is short, common, one repeated character, or built on the user's own
    name or e-mail, with a message that says why (InvalidInputError naming `field`)."""
    lowered = password.lower()
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInputError(field, f"must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(set(password)) == 1 or lowered in _common_passwords():
        raise InvalidInputError(field, "is one of the most common passwords; choose one nobody would guess")
    for own in (username.lower(), email.lower().partition("@")[0]):
        if len(own) >= 4 and own in lowered:
            raise InvalidInputError(field, "contains your username or e-mail name; choose one that does not")
