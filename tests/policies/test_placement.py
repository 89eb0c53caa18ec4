"""Placement policy on its own: pure functions over snapshots."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from remotegpu.policies.placement import (
    GpuPoolSnapshot,
    HostSnapshot,
    PlacementRequest,
    Strategy,
    could_ever_fit,
    fits,
    rank_placements,
)


def host(
    name: str,
    *pools: tuple[str, int],
    schedulable: bool = True,
    cpu: int = 64_000,
    memory: int = 1 << 40,
    ports: int = 100,
) -> HostSnapshot:
    return HostSnapshot(
        key=name,
        name=name,
        schedulable=schedulable,
        pools=tuple(GpuPoolSnapshot(model, free) for model, free in pools),
        cpu_millis_free=cpu,
        memory_bytes_free=memory,
        ports_free=ports,
    )


def test_bin_pack_picks_the_host_with_the_fewest_free_gpus_that_still_fit() -> None:
    hosts = [host("a", ("H100", 8)), host("b", ("H100", 3)), host("c", ("H100", 1))]
    ranked = rank_placements(hosts, PlacementRequest(gpu_count=2))
    assert [p.host_name for p in ranked] == ["b", "a"]


def test_spread_picks_the_host_with_the_most_free_gpus() -> None:
    hosts = [host("a", ("H100", 3)), host("b", ("H100", 8))]
    assert rank_placements(hosts, PlacementRequest(gpu_count=2), Strategy.SPREAD)[0].host_name == "b"


def test_ties_break_on_the_host_name() -> None:
    hosts = [host("z", ("H100", 4)), host("m", ("H100", 4)), host("a", ("H100", 4))]
    assert [p.host_name for p in rank_placements(hosts, PlacementRequest(gpu_count=1))] == ["a", "m", "z"]


def test_a_tie_break_key_orders_equals_its_own_way_and_keeps_the_strategy_first() -> None:
    hosts = [host(f"node-{index:02d}", ("H100", 4)) for index in range(16)] + [host("packed", ("H100", 2))]
    request = PlacementRequest(gpu_count=1)
    firsts = set()
    for key in (f"env-{index}" for index in range(40)):
        ranked = [p.host_name for p in rank_placements(hosts, request, tie_break=key)]
        assert ranked[0] == "packed", "the fullest fitting host still comes first"
        assert ranked == [p.host_name for p in rank_placements(list(reversed(hosts)), request, tie_break=key)]
        assert sorted(ranked[1:]) == [f"node-{index:02d}" for index in range(16)]
        firsts.add(ranked[1])
    # forty environments placed at once would not all try the same one of sixteen equal hosts first
    assert len(firsts) >= 8


def test_model_must_match_and_any_takes_one_pool() -> None:
    mixed = host("mixed", ("A100", 2), ("H100", 2))
    assert [p.gpu_model for p in fits(mixed, PlacementRequest(gpu_count=2, gpu_model="H100"))] == ["H100"]
    assert {p.gpu_model for p in fits(mixed, PlacementRequest(gpu_count=2))} == {"A100", "H100"}
    assert fits(mixed, PlacementRequest(gpu_count=3)) == [], "one environment never mixes models"
    assert (
        fits(mixed, PlacementRequest(gpu_count=1, excluded_models=frozenset({"A100"})))[0].gpu_model == "H100"
    )


def test_unschedulable_hosts_and_short_cpu_memory_or_ports_never_fit() -> None:
    request = PlacementRequest(gpu_count=1, cpu_millis=4000, memory_bytes=1 << 30, ports=2)
    assert fits(host("cordoned", ("H100", 8), schedulable=False), request) == []
    assert fits(host("cpu", ("H100", 8), cpu=3999), request) == []
    assert fits(host("memory", ("H100", 8), memory=(1 << 30) - 1), request) == []
    assert fits(host("ports", ("H100", 8), ports=1), request) == []
    assert len(fits(host("ok", ("H100", 8)), request)) == 1


def test_cpu_only_requests_fit_any_schedulable_host() -> None:
    assert fits(host("a"), PlacementRequest(gpu_count=0, cpu_millis=1000))[0].gpu_model is None


def test_could_ever_fit_looks_at_total_not_free_capacity() -> None:
    busy = host("busy", ("H100", 0))
    assert could_ever_fit(busy, {"H100": 8}, PlacementRequest(gpu_count=8))
    assert not could_ever_fit(busy, {"H100": 8}, PlacementRequest(gpu_count=9))
    assert not could_ever_fit(busy, {"H100": 8}, PlacementRequest(gpu_count=1, gpu_model="A100"))


def test_request_describes_itself_for_queue_reasons() -> None:
    assert PlacementRequest(gpu_count=2, gpu_model="H100").describe() == "2×H100"
    assert PlacementRequest(gpu_count=1).describe() == "1×any GPU"


pools = st.lists(
    st.tuples(st.sampled_from(["A100", "H100"]), st.integers(0, 8)),
    min_size=0,
    max_size=2,
    unique_by=lambda p: p[0],
)
snapshots = st.lists(
    st.builds(
        lambda name, p, ok: host(name, *p, schedulable=ok),
        st.text("abcdefgh", min_size=1, max_size=3),
        pools,
        st.booleans(),
    ),
    max_size=8,
    unique_by=lambda h: h.name,
)
requests = st.builds(
    PlacementRequest, gpu_count=st.integers(0, 8), gpu_model=st.sampled_from([None, "A100", "H100"])
)


@given(snapshots, requests, st.sampled_from(list(Strategy)))
def test_every_ranked_placement_fits_and_the_ranking_is_deterministic(
    hosts: list[HostSnapshot], request: PlacementRequest, strategy: Strategy
) -> None:
    """Invariant: ranked placements are exactly the fitting ones, and input order does not matter."""
    ranked = rank_placements(hosts, request, strategy)
    assert ranked == rank_placements(list(reversed(hosts)), request, strategy)
    by_name = {h.name: h for h in hosts}
    for placement in ranked:
        target = by_name[placement.host_name]
        assert target.schedulable
        if request.gpu_count:
            pool = next(p for p in target.pools if p.model == placement.gpu_model)
            assert pool.free >= request.gpu_count
            assert request.gpu_model in (None, pool.model)
    expected = sum(len(fits(h, request)) for h in hosts)
    assert len(ranked) == expected


@given(snapshots, requests, st.sampled_from(list(Strategy)), st.text(min_size=1, max_size=12))
def test_a_tie_break_only_reorders_equally_good_placements(
    hosts: list[HostSnapshot], request: PlacementRequest, strategy: Strategy, key: str
) -> None:
    """Invariant: with a tie-break key the ranking holds the same placements, as good at each place."""
    by_name = rank_placements(hosts, request, strategy)
    keyed = rank_placements(hosts, request, strategy, tie_break=key)
    assert sorted(keyed, key=repr) == sorted(by_name, key=repr)
    assert [p.free_gpus_before for p in keyed] == [p.free_gpus_before for p in by_name]
    assert keyed == rank_placements(list(reversed(hosts)), request, strategy, tie_break=key)
