"""The load generator of `remotegpu bench api`, run as a process of its own (aiohttp on uvloop).

Open loop: each request has a scheduled start at the offered rate, and its latency counts from that
schedule, so a server that falls behind is charged for the queue it causes (no coordinated omission).
Closed loop: a fixed number of clients, each sending its next request when the last one is answered,
for the maximum throughput. The same generator loads the API and the benchmark's ceilings (`LoadPhase`).
This module imports little, so that the spawned process starts quickly.
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any

WORKSPACE = "bench"
IMAGE = "nvcr.io/nvidia/pytorch:24.05-py3"


@dataclass(frozen=True)
class Target:
    """What the load process needs to know."""

    base_url: str
    token: str
    environment_ids: list[str]


@dataclass(frozen=True)
class LoadPhase:
    """One server's load: `mix` is `api` (the benchmark's), `list` or `static`; an open loop at the
    offered rate for `open_seconds` (after a warm-up; none when 0), then the closed loop."""

    name: str
    target: Target
    mix: str
    open_seconds: float
    closed_seconds: float


def _kind(mix: str, index: int) -> str:
    if mix != "api":
        return mix
    slot = index % 10
    return "list" if slot < 6 else "get" if slot < 9 else "create"


async def _one(session: Any, target: Target, kind: str, index: int, tag: str) -> tuple[str, int]:
    base = f"{target.base_url}/api/v1/environments"
    if kind == "static":
        request = session.get(f"{target.base_url}/")
    elif kind == "list":
        request = session.get(base, params={"limit": "20"})
    elif kind == "get":
        request = session.get(f"{base}/{target.environment_ids[index % len(target.environment_ids)]}")
    else:
        body = {"name": f"b-{tag}-{index}", "workspace": WORKSPACE, "image": IMAGE, "resources": {"gpus": 1}}
        request = session.post(base, json=body)
    try:
        async with request as response:
            await response.read()
            return kind, response.status
    except Exception:  # any failure of the request itself counts as an error
        return kind, 0


async def _open_loop(
    target: Target, mix: str, rate: float, seconds: float, warmup_seconds: float
) -> list[tuple[str, float, int, float]]:
    """Every request's (kind, latency from its scheduled start in ms, status, completion time). Times
    come from `perf_counter`: uvloop's clock ticks in whole milliseconds. A warm-up at the same rate
    comes first and is not counted: it opens the client's connections and takes both sides through
    their first-request paths."""
    import aiohttp

    headers = {"Authorization": f"Bearer {target.token}"}
    connector = aiohttp.TCPConnector(limit=1000)
    tag = uuid.uuid4().hex[:6]
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        await _paced(session, target, mix, rate, warmup_seconds, f"{tag}w")
        return await _paced(session, target, mix, rate, seconds, tag)


async def _paced(
    session: Any, target: Target, mix: str, rate: float, seconds: float, tag: str
) -> list[tuple[str, float, int, float]]:
    results: list[tuple[str, float, int, float]] = []

    async def timed(index: int, scheduled: float) -> None:
        kind, status = await _one(session, target, _kind(mix, index), index, tag)
        done = time.perf_counter()
        results.append((kind, (done - scheduled) * 1000, status, done))

    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    tasks = []
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(timed(index, scheduled)))
    await asyncio.gather(*tasks)
    return results


async def _closed_loop(target: Target, mix: str, clients: int, seconds: float) -> tuple[int, int]:
    import aiohttp

    headers = {"Authorization": f"Bearer {target.token}"}
    done = errors = 0
    tag = uuid.uuid4().hex[:6]
    async with aiohttp.ClientSession(
        headers=headers, connector=aiohttp.TCPConnector(limit=clients)
    ) as session:
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + seconds

        async def client(number: int) -> None:
            nonlocal done, errors
            index = number
            while loop.time() < stop_at:
                _, status = await _one(session, target, _kind(mix, index), index, f"{tag}c")
                done += 1
                errors += not 200 <= status < 300
                index += clients

        await asyncio.gather(*(client(n) for n in range(clients)))
    return done, errors


def generate_load(
    phases: list[LoadPhase], rate: float, warmup_seconds: float, clients: int, pipe: Pipe
) -> None:
    """The load process (spawned): for each phase in turn, its open loop at `rate` after a warm-up, then
    its closed loop of `clients`; sends {phase name: (open-loop samples, (closed-loop requests,
    closed-loop errors))} on `pipe`.

    The collector is off during each open loop: a full collection over tens of thousands of pending
    requests pauses the load process for tens of milliseconds, which the open loop would charge to the
    server.
    """
    import uvloop

    results: dict[str, Any] = {}
    for phase in phases:
        opened: list[tuple[str, float, int, float]] = []
        if phase.open_seconds > 0:
            gc.disable()
            opened = uvloop.run(_open_loop(phase.target, phase.mix, rate, phase.open_seconds, warmup_seconds))
            gc.enable()  # the closed loop keeps no per-request state
            gc.collect()
        closed = uvloop.run(_closed_loop(phase.target, phase.mix, clients, phase.closed_seconds))
        results[phase.name] = (opened, closed)
    pipe.send(results)
    pipe.close()


def achieved_rate(opened: list[tuple[str, float, int, float]]) -> float:
    """The rate successful responses came back at, between the 1st and the 99th percentile of their
    completion times: the offered rate for a server that keeps up (its latency shifts both ends alike),
    its own pace for one that falls behind; the trimmed ends keep one slow last response from counting
    as a slower rate."""
    done = sorted(at for _, _, status, at in opened if 200 <= status < 300)
    trim = len(done) // 100
    if len(done) - 2 * trim < 2:
        return 0.0
    first, last = done[trim], done[len(done) - trim - 1]
    return round((len(done) - 2 * trim - 1) / (last - first), 1)
