"""Pod observations the watch vouches for, so a resync of a settled environment costs no API call.

Every settled running environment is looked at again each resync period (10 s by default): at 10,000
that was 1,000 pod reads a second, a third of the reconciler's time and most of the API server's. An
informer's answer is the usual one: while the pod watch runs unbroken, a pod it reported no change of
since the last read is the pod that read returned. An observation is kept here from its read until:

- the watch reports the environment's pod at another version, or deleted;
- the driver itself writes the pod (created, replaced, deleted);
- a stream fails, or the watch breaks in a way that can lose events (started afresh, a 410, stopped):
  everything goes;
- it is older than `max_age_s`: a settled environment is still read from the API server every few
  minutes, whatever the watch says.

And nothing kept is answered while the watch shows no sign of life for `silence_s` (no event and no
stream ending as the server ends them, every few seconds): a connection dropped without a word, or a
watch that keeps failing (a 403 after an RBAC change, 5xx), cannot hide a change for longer than that.

A read races the watch: a change reported while the read was in flight may be newer than what it
returned. A read therefore takes a `ticket` first and is kept only when no event for that
environment, other than one for the very version read, came after the ticket.

Versions are compared for equality only (the API says they are opaque). The maps are bounded; when
the record of events grows past its bound, reads older than the forgotten events are not kept.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from remotegpu.core.cluster.driver import PodObservation

WATCHED_PODS_LIMIT = 100_000
"""Observations kept: more than the environments a reconciler process holds."""

WATCHED_POD_MAX_AGE_S = 120.0
"""How long an observation is trusted without a read from the API server."""

WATCH_SILENCE_S = 15.0
"""How long the watch may go without a sign of life (its streams end every 5 s) before nothing kept
is answered."""


class Ticket(NamedTuple):
    """Taken before a read: the watch's term and the last event seen then."""

    term: int
    sequence: int


class _Kept(NamedTuple):
    version: str
    observation: PodObservation
    read_at: float


class WatchedPods:
    """Environment id → its pod's last observation, kept while the watch says it has not changed."""

    def __init__(
        self,
        limit: int = WATCHED_PODS_LIMIT,
        max_age_s: float = WATCHED_POD_MAX_AGE_S,
        silence_s: float = WATCH_SILENCE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._max_age_s = max_age_s
        self._silence_s = silence_s
        self._alive_at = 0.0
        self._clock = clock
        self._lock = threading.Lock()
        self._kept: OrderedDict[uuid.UUID, _Kept] = OrderedDict()
        self._events: OrderedDict[uuid.UUID, tuple[int, str | None]] = OrderedDict()
        """Environment → (sequence, version) of the watch's last event for its pod."""
        self._sequence = 0
        self._forgotten_up_to = 0
        """The newest sequence dropped from `_events`: a ticket older than it cannot be checked."""
        self._term = 0
        self._watching = False

    def watch_started_afresh(self) -> None:
        """A watch starts without a version to resume from: it replays every pod as it now is, and
        from here on reports every change."""
        with self._lock:
            self._reset()
            self._watching = True
            self._alive_at = self._clock()

    def watch_alive(self) -> None:
        """A stream of the watch ended as the server ends them: it is alive."""
        with self._lock:
            self._heard()

    def _heard(self) -> None:
        """A sign of life; after a silence, what was kept before it is not vouched for."""
        now = self._clock()
        if now - self._alive_at > self._silence_s:
            self._reset()
        self._alive_at = now

    def watch_interrupted(self) -> None:
        """A stream failed; the next resumes where it ended, but until it has caught up with what it
        missed nothing kept is known to hold: all of it goes (read once more), the watch goes on."""
        with self._lock:
            self._reset()

    def watch_broken(self) -> None:
        """The watch can no longer resume (a 410) or stopped: nothing kept can be vouched for."""
        with self._lock:
            self._reset()
            self._watching = False

    def _reset(self) -> None:
        self._term += 1
        self._kept.clear()
        self._events.clear()
        self._forgotten_up_to = self._sequence

    def ticket(self) -> Ticket:
        """Take before reading a pod from the API server; give to `keep` with what it read."""
        with self._lock:
            return Ticket(self._term, self._sequence)

    def keep(
        self, environment_id: uuid.UUID, version: str | None, observation: PodObservation, ticket: Ticket
    ) -> None:
        """Keep what a read returned, unless the watch cannot vouch for it (see the module)."""
        if not version:
            return
        with self._lock:
            if not self._live() or ticket.term != self._term or ticket.sequence < self._forgotten_up_to:
                return
            event = self._events.get(environment_id)
            if event is not None and event[0] > ticket.sequence and event[1] != version:
                return
            self._kept[environment_id] = _Kept(version, observation, self._clock())
            self._kept.move_to_end(environment_id)
            while len(self._kept) > self._limit:
                self._kept.popitem(last=False)

    def get(self, environment_id: uuid.UUID) -> PodObservation | None:
        """The kept observation, while the watch vouches for it and it is not too old; else None."""
        with self._lock:
            kept = self._kept.get(environment_id)
            if kept is None or not self._live():
                return None
            if self._clock() - kept.read_at > self._max_age_s:
                del self._kept[environment_id]
                return None
            return kept.observation

    def _live(self) -> bool:
        return self._watching and self._clock() - self._alive_at <= self._silence_s

    def changed(self, environment_id: uuid.UUID, version: str | None, *, deleted: bool = False) -> None:
        """The watch reported the environment's pod at `version` (or deleted)."""
        with self._lock:
            self._heard()
            self._record(environment_id, None if deleted else version)
            kept = self._kept.get(environment_id)
            if kept is not None and (deleted or kept.version != version):
                del self._kept[environment_id]

    def forget(self, environment_id: uuid.UUID) -> None:
        """The driver wrote the pod itself: read it again next time (a read in flight is not kept)."""
        with self._lock:
            self._kept.pop(environment_id, None)
            self._record(environment_id, None)

    def _record(self, environment_id: uuid.UUID, version: str | None) -> None:
        self._sequence += 1
        self._events[environment_id] = (self._sequence, version)
        self._events.move_to_end(environment_id)
        while len(self._events) > self._limit:
            _, (sequence, _) = self._events.popitem(last=False)
            self._forgotten_up_to = max(self._forgotten_up_to, sequence)

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept)
