"""A metering leader in a process of its own, for the kill -9 test: it leads shard 0, then ticks the
meter on a frozen clock one `step` at a time, printing each tick, until the parent kills it."""

from __future__ import annotations

import datetime as dt
import sys
import time

from remotegpu.core.cluster.memory import InMemoryCluster
from remotegpu.core.platform import clock
from remotegpu.core.platform.db import make_engine
from remotegpu.core.platform.settings import Settings
from remotegpu.reconciler import metering
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.leader import LeaderElector


def main(url: str, start: str, step_s: float, chunk: int) -> None:
    metering.CHUNK = chunk  # many statements per tick, so the kill lands between or inside them
    elector = LeaderElector(url, identity="meter-child")
    while not elector.campaign():  # the parent kills this process, so no timeout here
        time.sleep(0.05)  # real time: another process holds the lock
    assert elector.epoch is not None
    engine = make_engine(url, pool_size=1)
    ctx = ReconcilerContext(engine, InMemoryCluster(), Settings(), "meter-child", epoch=elector.epoch)
    print(f"leading {elector.epoch}", flush=True)
    with clock.frozen_at(dt.datetime.fromisoformat(start)) as advance:
        while True:
            advance(dt.timedelta(seconds=step_s))
            report = metering.meter_tick(ctx)
            print(f"tick {clock.now().isoformat()} {report.intervals}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
