"""Reloading settings while running: on SIGHUP, or when the settings file changes.

The settings are read again the way the command read them (file and environment); a file that does not
parse changes nothing and is logged. What may change while running is applied — the log level and format
here, and what the command's `apply` takes (the reconciler's workers and intervals, the API's sign-in
limits and CORS origins); every other changed setting is logged as needing a restart. Prices, policies
and quotas live in the database and need no reload.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
from rich.console import Console

from remotegpu.core.platform.errors import SettingsError
from remotegpu.core.platform.settings import CONFIG_FILE_VARIABLE, Settings, load_settings
from remotegpu.ops.log_format import LogFormat, configure_logging

log = logging.getLogger(__name__)

LOGGING = frozenset({"log_level", "log_format"})
FILE_POLL_SECONDS = 2.0
FILE_SETTLE_SECONDS = 0.25
"""A changed file is read once it stayed the same this long: an editor or `write_text` truncates, then
writes, and a poll between the two read an empty file (the defaults, logged as a reload)."""


class SettingsReloader:
    """Reads the settings again and applies what may change; `watch` runs it on SIGHUP and file changes."""

    def __init__(
        self,
        settings: Settings,
        apply: Callable[[Settings], set[str]],
        *,
        config_file: Path | None,
        console: Console,
        log_format_flag: LogFormat | None = None,
        default_format: LogFormat = "json",
        fixed: tuple[str, ...] = (),
    ) -> None:
        self.settings = settings
        self._apply = apply
        self._config_file = config_file
        self._console = console
        self._flag = log_format_flag
        self._default_format = default_format
        self._fixed = fixed
        """Settings the command line chose (`--port`, `--host`): the file's value never replaces them."""
        self._wanted = threading.Event()

    def request(self) -> None:
        """Ask for a reload (what SIGHUP does)."""
        self._wanted.set()

    def reload(self) -> tuple[set[str], set[str]]:
        """Reload now; returns (applied, needing a restart). A bad file changes nothing."""
        try:
            loaded = load_settings(config_file=self._config_file)
        except SettingsError as error:
            log.error("Settings not reloaded: the new ones are invalid", extra={"error": str(error)})
            return set(), set()
        # as the command chose it at start: the flag, else the setting, else the command's default
        new = msgspec.structs.replace(
            loaded, log_format=self._flag or loaded.log_format or self._default_format
        )
        old = self.settings
        changed = {name for name in Settings.__struct_fields__ if getattr(old, name) != getattr(new, name)}
        applied = self._apply(new) & changed
        if changed & LOGGING:
            configure_logging(
                new.log_level, new.log_format or self._default_format, self._console, replace=True
            )
            applied |= changed & LOGGING
        restart = changed - applied
        self.settings = new
        log.info(
            "Settings reloaded",
            extra={"applied": sorted(applied), "need_restart": sorted(restart)},
        )
        return applied, restart

    def _file(self) -> Path | None:
        import os

        named = self._config_file or os.environ.get(CONFIG_FILE_VARIABLE)
        return Path(named) if named else None

    def _stamp(self) -> tuple[int, int] | None:
        path = self._file()
        with contextlib.suppress(OSError):
            if path is not None:
                status = path.stat()
                return status.st_mtime_ns, status.st_size
        return None

    def _run(self, stop: threading.Event) -> None:
        seen = self._stamp()
        while not stop.is_set():
            wanted = self._wanted.wait(FILE_POLL_SECONDS)
            if stop.is_set():
                return
            stamp = self._stamp()
            if not wanted and stamp != seen:
                if stop.wait(FILE_SETTLE_SECONDS):
                    return
                if self._stamp() != stamp:
                    continue  # still being written: looked at again at the next poll
            if wanted or stamp != seen:
                self._wanted.clear()
                seen = stamp
                try:
                    self.reload()
                except Exception:
                    log.exception("Settings reload failed; the running ones stay")

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        """While the block runs: reload on SIGHUP (main thread only) and when the settings file changes."""
        stop = threading.Event()
        previous = signal.signal(signal.SIGHUP, lambda _signum, _frame: self.request())
        thread = threading.Thread(target=self._run, args=(stop,), name="settings-reload", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            self._wanted.set()
            thread.join(timeout=5)
            signal.signal(signal.SIGHUP, previous)
