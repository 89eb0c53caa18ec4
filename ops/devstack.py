"""`remotegpu dev`: everything RemoteGPU needs on one machine, started in order and stopped in reverse.

Today that is the database (the configured one, or an embedded Postgres) with the schema migrated, a
demo inventory when it has none, and a reconciler (leader of shard 0) driving the in-memory cluster;
the API and the simulated cluster join the stack as they land.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL

from remotegpu.core.settings import Settings
from remotegpu.ops.migrate import current_revision, upgrade
from remotegpu.ops.postgres import EmbeddedPostgres, ensure_database
from remotegpu.ops.reconciler_runner import running_reconciler, seed_demo_inventory, wait_for_leadership

DEV_DATABASE = "remotegpu"


@dataclass(frozen=True)
class DevStack:
    """What `remotegpu dev` started, for printing and for tests."""

    database_url: URL
    embedded_data_dir: Path | None
    schema_revision: str | None
    reconciler: str = "not started"

    def describe(self) -> list[tuple[str, str]]:
        """(component, where) rows, secrets redacted."""
        where = self.database_url.render_as_string(hide_password=True)
        if self.embedded_data_dir is not None:
            where += f"  (embedded, data in {self.embedded_data_dir})"
        return [
            ("Postgres", where),
            ("Schema", f"migrated to revision {self.schema_revision}"),
            ("Reconciler", self.reconciler),
        ]


@contextlib.contextmanager
def running_dev_stack(settings: Settings) -> Iterator[DevStack]:
    """Start the stack, yield what runs, and stop it again on exit (also on Ctrl-C)."""
    with contextlib.ExitStack() as stack:
        embedded_dir: Path | None = None
        if settings.database_url:
            url = ensure_database(settings.database_url)
        else:
            embedded_dir = (settings.data_dir / "postgres").resolve()
            server = stack.enter_context(EmbeddedPostgres(embedded_dir))
            url = ensure_database(server.url.set(database=DEV_DATABASE))
        upgrade(url)
        seeded = seed_demo_inventory(url)
        reconciler = stack.enter_context(running_reconciler(url, settings))
        leading = wait_for_leadership(reconciler)
        epoch = reconciler.elector.epoch
        state = f"leader of shard 0 (epoch {epoch})" if leading else "standby (another replica leads)"
        cluster = "in-memory cluster" + (f", {seeded} demo hosts added" if seeded else "")
        yield DevStack(
            database_url=url,
            embedded_data_dir=embedded_dir,
            schema_revision=current_revision(url),
            reconciler=f"{state}; {cluster}",
        )


def wait_until(stop: threading.Event) -> None:
    """Block until `stop` is set (by a signal handler)."""
    while not stop.wait(timeout=0.5):
        pass
