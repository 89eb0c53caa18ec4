"""Home volumes: one persistent volume per user per workspace, at `/home/<username>` in each of the
user's environments there while the workspace's `home_volume_size` is set.

Its claim is created with the user's environment's other objects (create-or-get by its deterministic
name, `home-<workspace id>-<user id>`) and never deleted with one. The row and its storage meter are
written by the apply that records the environment's provisioning, in that transaction: the first
provisioning makes them, later ones find them (`ON CONFLICT DO NOTHING`), so the home is metered from
the moment it was made, once. The meter belongs to no environment (`meters.home_volume_id`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import text

from remotegpu.core.cluster.driver import HomeMount
from remotegpu.core.platform.pipeline import Statement
from remotegpu.core.platform.quantities import parse_bytes

GIB = 1 << 30
HOME_SUBJECT = "home"

HOME_SQL = """
    (SELECT CASE WHEN w.settings ? 'home_volume_size' THEN  -- off: one primary-key read, nothing more
                json_build_array(w.settings->>'home_volume_size',
                                 (SELECT h.size_bytes FROM home_volumes h
                                   WHERE h.workspace_id = e.workspace_id AND h.user_id = e.user_id),
                                 (SELECT u.username FROM users u WHERE u.id = e.user_id)) END
       FROM workspaces w WHERE w.id = e.workspace_id)
"""
"""[the workspace's home size setting, the size of the user's existing home, the username]: a column of
the step's load."""

_RECORD_SQL = text(
    """
    WITH made AS (
        INSERT INTO home_volumes (workspace_id, user_id, size_bytes) VALUES (:w, :u, :size)
        ON CONFLICT (workspace_id, user_id) DO NOTHING
        RETURNING id
    )
    INSERT INTO meters (home_volume_id, workspace_id, user_id, resource, subject, quantity, started_at,
                        metered_until)
    SELECT made.id, :w, :u, 'storage', :subject, :gib, :now, :now FROM made
    """
)


def home_mount(workspace_id: uuid.UUID, user_id: uuid.UUID, loaded: list[object] | None) -> HomeMount | None:
    """The user's home in the workspace from `HOME_SQL`'s value; None when the workspace has none."""
    if not loaded or loaded[0] is None:
        return None
    setting, existing, username = loaded
    size = int(str(existing)) if existing is not None else parse_bytes(str(setting))
    return HomeMount(workspace_id, user_id, f"/home/{username}", size)


def record_home(home: HomeMount, now: dt.datetime) -> Statement:
    """The statement that makes the home's row and opens its storage meter, unless it exists
    (idempotent); the provisioning's apply sends it with its guarded update."""
    return (
        _RECORD_SQL,
        {
            "w": home.workspace_id,
            "u": home.user_id,
            "size": home.size_bytes,
            "subject": HOME_SUBJECT,
            "gib": Decimal(home.size_bytes) / GIB,
            "now": now,
        },
    )
