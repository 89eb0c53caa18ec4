"""Which pod version each environment's last observation read, so the watch can skip its echo.

A step reads its pod directly; the watch reports the same change a moment later. Remembering the
`resourceVersion` read lets the watch drop an event for exactly that version. Versions are compared
for equality only (the API says they are opaque). The map is bounded: an entry goes when its event
arrives, and the oldest go first beyond `limit` (forgetting one costs a redundant step, nothing more).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict

READ_VERSIONS_LIMIT = 4096
"""Entries kept: more than the reconciler has steps in flight between a read and its echo."""


class ReadVersions:
    """Environment id → the pod `resourceVersion` its last observation read; thread-safe."""

    def __init__(self, limit: int = READ_VERSIONS_LIMIT) -> None:
        self._limit = limit
        self._versions: OrderedDict[uuid.UUID, str] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, environment_id: uuid.UUID, version: str | None) -> None:
        """An observation read the environment's pod at `version` (None: the answer had none)."""
        if not version:
            return
        with self._lock:
            self._versions[environment_id] = version
            self._versions.move_to_end(environment_id)
            while len(self._versions) > self._limit:
                self._versions.popitem(last=False)

    def was_read(self, environment_id: uuid.UUID, version: str | None) -> bool:
        """Whether an event for `version` repeats what the last observation read; such an entry is
        used up (a later event of the same version, after a watch restart, counts as new)."""
        with self._lock:
            if version and self._versions.get(environment_id) == version:
                del self._versions[environment_id]
                return True
            return False

    def __len__(self) -> int:
        with self._lock:
            return len(self._versions)
