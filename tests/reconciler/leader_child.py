"""A leader in a process of its own, for the kill and pause tests: it leads, then writes under fencing."""

from __future__ import annotations

import sys
import time

from sqlalchemy import text

from remotegpu.core.platform.db import make_engine
from remotegpu.reconciler.leader import FencedOutError, LeaderElector, fence


def main(url: str) -> None:
    elector = LeaderElector(url, identity="child", idle_timeout_s=1.5)
    while not elector.campaign():  # the parent kills this process, so no timeout here
        time.sleep(0.1)  # real time: another process holds the lock
    epoch = elector.epoch
    assert epoch is not None
    print(f"leading {epoch}", flush=True)
    engine = make_engine(url, pool_size=1)
    while True:
        time.sleep(0.2)  # real time: the parent pauses this process between writes (SIGSTOP)
        # No heartbeat first: this is a write that was already under way when the process was paused.
        try:
            with engine.begin() as connection:
                connection.execute(
                    text(
                        "INSERT INTO events (actor_kind, kind, reason) VALUES ('reconciler', 'test', 'ChildWrite')"
                    )
                )
                fence(connection, 0, epoch)
        except FencedOutError:
            print("write fenced", flush=True)
            return
        print("write ok", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
