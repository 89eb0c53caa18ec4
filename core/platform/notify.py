"""The wake-up channel between writers of desired state (API, CLI) and the reconciler.

A NOTIFY is only a hint: the reconciler resyncs periodically, so a lost notification delays work by at
most one resync period and never loses it.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

CHANNEL = "remotegpu_environments"


def notify_environments(connection: Connection, payload: str = "") -> None:
    """Wake the reconciler when the transaction commits (Postgres delivers NOTIFY at commit)."""
    connection.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})


CREDENTIALS_CHANNEL = "remotegpu_credentials"
"""Credentials changed (a user disabled or enabled, a token revoked): API processes empty their caches."""


def notify_credentials_changed(connection: Connection) -> None:
    """Tell every API process to forget cached credentials (delivered when the transaction commits)."""
    connection.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CREDENTIALS_CHANNEL})
