"""The capacity queue's fast plan against the plain definition it replaced: the same plan, every time.

`reference_plan` is the queue written as its docstring says it works — every waiting request looks at
every host, fair share picks the next workspace by a scan — with no shortcut. `plan_queue` skips
requests a smaller one already could not place, finds GPUs through pools bucketed by free count
(`PoolIndex`), and orders with a heap; none of it may change the plan, under either strategy, on hosts
of one or several models, with reserved hosts and hosts short of CPU, memory or ports.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict, deque
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from remotegpu.policies.placement import (
    GpuPoolSnapshot,
    HostSnapshot,
    PlacementRequest,
    Strategy,
    could_ever_fit,
    rank_placements,
)
from remotegpu.policies.queue import NEVER_FITS, QueuedRequest, Waiting, order_queue, plan_queue


def reference_order(items: Iterable[QueuedRequest], running: Mapping[Any, int]) -> list[QueuedRequest]:
    by_priority: dict[int, list[QueuedRequest]] = defaultdict(list)
    for item in items:
        by_priority[item.priority].append(item)
    ordered: list[QueuedRequest] = []
    for priority in sorted(by_priority, reverse=True):
        lanes: dict[Hashable, deque[QueuedRequest]] = defaultdict(deque)
        for item in sorted(by_priority[priority], key=lambda i: (i.submitted_order, str(i.key))):
            lanes[item.workspace].append(item)
        share = {ws: running.get(ws, 0) for ws in lanes}
        while lanes:
            workspace = min(lanes, key=lambda ws: (share[ws], lanes[ws][0].submitted_order, str(ws)))
            item = lanes[workspace].popleft()
            ordered.append(item)
            share[workspace] += item.request.gpu_count
            if not lanes[workspace]:
                del lanes[workspace]
    return ordered


def reference_plan(
    items: list[QueuedRequest],
    hosts: list[HostSnapshot],
    totals: Mapping[Any, Mapping[str, int]],
    strategy: Strategy = Strategy.BIN_PACK,
) -> tuple[list[tuple[Hashable, Hashable, str | None]], dict[Hashable, Waiting], Hashable | None]:
    free = {host.key: host for host in hosts}
    placements = []
    waiting: dict[Hashable, Waiting] = {}
    head = None
    reserved: set[Hashable] = set()
    position = 0
    for item in reference_order(items, {}):
        ranked = rank_placements([h for k, h in free.items() if k not in reserved], item.request, strategy)
        if ranked:
            best = ranked[0]
            placements.append((item.key, best.host_key, best.gpu_model))
            host = free[best.host_key]
            free[best.host_key] = dataclasses.replace(
                host,
                pools=tuple(
                    GpuPoolSnapshot(p.model, p.free - item.request.gpu_count)
                    if p.model == best.gpu_model
                    else p
                    for p in host.pools
                ),
                cpu_millis_free=host.cpu_millis_free - item.request.cpu_millis,
                memory_bytes_free=host.memory_bytes_free - item.request.memory_bytes,
                ports_free=host.ports_free - item.request.ports,
            )
            continue
        position += 1
        possible = [h for h in free.values() if could_ever_fit(h, totals.get(h.key, {}), item.request)]
        if not possible:
            waiting[item.key] = Waiting(position, f"{NEVER_FITS} {item.request.describe()}")
            continue
        if head is None:
            head = item.key
            matching = [
                max(
                    (
                        p.free
                        for p in h.pools
                        if item.request.gpu_model in (None, p.model)
                        and p.model not in item.request.excluded_models
                    ),
                    default=0,
                )
                for h in possible
            ]
            closest = min(zip(possible, matching, strict=True), key=lambda pair: (-pair[1], pair[0].name))
            reserved.add(closest[0].key)
        waiting[item.key] = Waiting(position, f"waiting for {item.request.describe()}")
    return placements, waiting, head


MODELS = st.sampled_from(["H100", "A100", "L4"])


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[QueuedRequest], list[HostSnapshot], dict[Any, dict[str, int]]]:
    hosts = []
    totals: dict[Any, dict[str, int]] = {}
    for index in range(draw(st.integers(1, 10))):
        # one or two models per host; names may repeat (keys do not), so ties fall to the host order
        models = draw(st.lists(MODELS, min_size=1, max_size=2, unique=True))
        total = draw(st.sampled_from([4, 8]))
        key = f"k{index}"
        hosts.append(
            HostSnapshot(
                key,
                f"h{draw(st.integers(0, index))}",
                draw(st.booleans()) or index == 0,
                tuple(GpuPoolSnapshot(model, draw(st.integers(0, total))) for model in models),
                draw(st.sampled_from([8_000, 64_000])),
                draw(st.sampled_from([1 << 34, 1 << 40])),
                draw(st.integers(0, 4)),
            )
        )
        totals[key] = dict.fromkeys(models, total)
    items = [
        QueuedRequest(
            f"e{index}",
            draw(st.sampled_from(["a", "b", "c"])),
            draw(st.sampled_from([0, 0, 1])),
            float(draw(st.integers(0, 5))),
            PlacementRequest(
                gpu_count=draw(st.sampled_from([0, 1, 2, 4, 8, 16])),
                gpu_model=draw(st.one_of(st.none(), MODELS)),
                cpu_millis=draw(st.sampled_from([1_000, 16_000])),
                memory_bytes=draw(st.sampled_from([1 << 30, 1 << 35])),
                ports=draw(st.integers(0, 2)),
                excluded_models=draw(st.sampled_from([frozenset(), frozenset({"A100"})])),
            ),
        )
        for index in range(draw(st.integers(0, 30)))
    ]
    return items, hosts, totals


@settings(max_examples=300, deadline=None)
@given(worlds(), st.sampled_from(Strategy))
def test_the_fast_plan_is_the_reference_plan(
    world: tuple[list[QueuedRequest], list[HostSnapshot], dict[Any, dict[str, int]]], strategy: Strategy
) -> None:
    items, hosts, totals = world
    plan = plan_queue(items, hosts, totals, {}, strategy)
    placements, waiting, head = reference_plan(items, hosts, totals, strategy)
    assert [(item.key, p.host_key, p.gpu_model) for item, p in plan.placements] == placements
    assert plan.waiting == waiting
    assert plan.head == head


@settings(max_examples=100, deadline=None)
@given(worlds(), st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 20)))
def test_the_heap_order_is_the_scanned_order(
    world: tuple[list[QueuedRequest], list[HostSnapshot], dict[Any, dict[str, int]]], running: dict[str, int]
) -> None:
    items, _, _ = world
    assert [i.key for i in order_queue(items, running)] == [i.key for i in reference_order(items, running)]
