"""The pool index picks what `best_placement` picks, over any hosts, reservations and earlier placements."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remotegpu.policies.placement import (
    GpuPoolSnapshot,
    HostSnapshot,
    PlacementRequest,
    Strategy,
    best_placement,
)
from remotegpu.policies.pool_index import PoolIndex

MODELS = st.sampled_from(["H100", "A100", "L4"])


@st.composite
def hosts(draw: st.DrawFn) -> list[HostSnapshot]:
    return [
        HostSnapshot(
            index,
            f"h{draw(st.integers(0, 5))}",
            draw(st.booleans()),
            tuple(
                GpuPoolSnapshot(model, draw(st.integers(0, 8)))
                for model in draw(st.lists(MODELS, min_size=1, max_size=2, unique=True))
            ),
            draw(st.sampled_from([0, 4_000, 64_000])),
            draw(st.sampled_from([1 << 30, 1 << 40])),
            draw(st.integers(0, 3)),
        )
        for index in range(draw(st.integers(0, 12)))
    ]


requests = st.builds(
    PlacementRequest,
    gpu_count=st.integers(1, 8),
    gpu_model=st.one_of(st.none(), MODELS),
    cpu_millis=st.sampled_from([0, 4_000, 16_000]),
    memory_bytes=st.sampled_from([0, 1 << 35]),
    ports=st.integers(0, 2),
    excluded_models=st.sampled_from([frozenset(), frozenset({"A100"}), frozenset({"H100", "L4"})]),
)


@settings(max_examples=300, deadline=None)
@given(hosts(), st.lists(requests, min_size=1, max_size=12), st.sampled_from(Strategy), st.data())
def test_the_index_gives_the_best_placement(
    snapshots: list[HostSnapshot], asked: list[PlacementRequest], strategy: Strategy, data: st.DataObject
) -> None:
    index = PoolIndex(snapshots)
    current = {host.key: host for host in snapshots}
    for request in asked:
        reserved = set(data.draw(st.lists(st.sampled_from(list(current) or [None]), max_size=2)))
        expected = best_placement(
            (host for key, host in current.items() if key not in reserved), request, strategy
        )
        assert index.best(request, strategy, reserved) == expected
        if expected is not None:  # take it, as a plan does, and go on from there
            host = current[expected.host_key]
            pools = tuple(
                dataclasses.replace(pool, free=pool.free - request.gpu_count)
                if pool.model == expected.gpu_model
                else pool
                for pool in host.pools
            )
            current[host.key] = dataclasses.replace(
                host, pools=pools, cpu_millis_free=host.cpu_millis_free - request.cpu_millis
            )
            index.replace(current[host.key])


def test_cpu_only_requests_are_not_for_the_index() -> None:
    with pytest.raises(ValueError, match="GPU requests only"):
        PoolIndex([]).best(PlacementRequest(gpu_count=0), Strategy.BIN_PACK, set())
