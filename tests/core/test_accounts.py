"""Accounts: the platform always keeps an active administrator."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine, text

from remotegpu.core.accounts.users import register_user, set_user_disabled
from remotegpu.core.environments.states import UserRole
from remotegpu.core.platform.errors import ConflictError


def test_two_admins_disabling_each_other_at_once_leave_one_active(db: Engine) -> None:
    """Each admin sees the other active before either commits; the admin rows are locked first, so the
    second to commit sees the first's change and is refused (409), over several rounds."""
    with db.begin() as connection:
        admins = [
            register_user(
                connection,
                email=f"{n}@example.org",
                username=n,
                password="a fine admin passphrase",
                role=UserRole.ADMIN,
            ).user_id
            for n in ("ada", "bob")
        ]
    start = threading.Barrier(2)  # reusable: both threads of a round pass it together

    def disable(actor: uuid.UUID, target: uuid.UUID) -> str:
        start.wait()
        try:
            with db.begin() as connection:
                set_user_disabled(connection, target, True, actor_id=actor)
        except ConflictError:
            return "refused"
        return "disabled"

    for _ in range(5):
        with ThreadPoolExecutor(2) as pool:
            outcomes = sorted(pool.map(disable, admins, reversed(admins)))
        assert outcomes == ["disabled", "refused"]
        with db.begin() as connection:
            connection.execute(text("UPDATE users SET disabled = false"))
