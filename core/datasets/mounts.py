"""Which datasets a spec names, checked when it is submitted: each must exist in the workspace (its
upload may still be under way: the environment then waits for it to be ready)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Connection, text

from remotegpu.core.platform.errors import InvalidInputError

_KNOWN_SQL = text("SELECT name FROM datasets WHERE workspace_id = :w AND name = ANY(:names)")


def check_datasets_exist(connection: Connection, workspace_id: uuid.UUID, names: Sequence[str]) -> None:
    """InvalidInputError on `$.datasets[i].name` for the first name the workspace has no dataset of."""
    if not names:
        return
    known = set(connection.execute(_KNOWN_SQL, {"w": workspace_id, "names": list(names)}).scalars())
    for index, name in enumerate(names):
        if name not in known:
            raise InvalidInputError(
                f"$.datasets[{index}].name",
                f"this workspace has no dataset named {name!r}; create it first (`remotegpu datasets create`)"
                " or see `remotegpu datasets list`",
            )
