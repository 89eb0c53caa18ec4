"""The capacity queue: order, fair share, reasons, and backfill that never delays the head."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from remotegpu.policies.placement import GpuPoolSnapshot, HostSnapshot, PlacementRequest
from remotegpu.policies.queue import QueuedRequest, QueuePlan, order_queue, plan_queue


def host(name: str, free: int, total: int = 8, model: str = "H100") -> tuple[HostSnapshot, dict[str, int]]:
    snapshot = HostSnapshot(name, name, True, (GpuPoolSnapshot(model, free),), 1 << 30, 1 << 50, 1000)
    return snapshot, {model: total}


def queued(
    key: str, gpus: int, *, workspace: str = "ws", priority: int = 0, at: float = 0.0
) -> QueuedRequest:
    return QueuedRequest(key, workspace, priority, at, PlacementRequest(gpu_count=gpus, gpu_model="H100"))


def plan(
    items: list[QueuedRequest],
    hosts: list[tuple[HostSnapshot, dict[str, int]]],
    running: dict[str, int] | None = None,
) -> QueuePlan:
    return plan_queue(items, [h for h, _ in hosts], {h.key: t for h, t in hosts}, running or {})


def test_priority_first_then_submit_time() -> None:
    items = [queued("late", 1, at=2), queued("early", 1, at=1), queued("urgent", 1, priority=5, at=3)]
    assert [i.key for i in order_queue(items, {})] == ["urgent", "early", "late"]


def test_fair_share_interleaves_workspaces_by_their_usage() -> None:
    items = [
        queued("a1", 2, workspace="a", at=1),
        queued("a2", 2, workspace="a", at=2),
        queued("a3", 2, workspace="a", at=3),
        queued("b1", 2, workspace="b", at=4),
    ]
    assert [i.key for i in order_queue(items, {"a": 0, "b": 0})] == ["a1", "b1", "a2", "a3"]
    assert [i.key for i in order_queue(items, {"a": 0, "b": 10})] == ["a1", "a2", "a3", "b1"]


def test_waiting_requests_get_positions_and_a_reason() -> None:
    result = plan([queued("big", 8, at=1), queued("bigger", 8, at=2)], [host("n1", 4)])
    assert result.placements == []
    assert result.waiting["big"].position == 1
    assert result.waiting["bigger"].position == 2
    assert result.waiting["big"].reason == "waiting for 8×H100"


def test_small_requests_are_backfilled_only_away_from_the_head_reservation() -> None:
    # n1 has 6 of 8 free: the head (8 GPUs) waits for it. n2 has 2 free: a small request may go there,
    # but a second small one must not take n1's GPUs, or the head would wait longer.
    hosts = [host("n1", 6), host("n2", 2, total=2)]
    result = plan([queued("head", 8, at=1), queued("small", 2, at=2), queued("small2", 2, at=3)], hosts)
    assert result.head == "head"
    assert result.reserved_hosts == frozenset({"n1"})
    assert [(item.key, place.host_name) for item, place in result.placements] == [("small", "n2")]
    assert result.waiting["small2"].position == 2


def test_a_request_no_host_can_ever_fit_does_not_hold_the_queue() -> None:
    result = plan([queued("huge", 16, at=1), queued("small", 1, at=2)], [host("n1", 8)])
    assert result.waiting["huge"].reason == "no host can ever fit 16×H100"
    assert result.head is None
    assert [item.key for item, _ in result.placements] == ["small"]


sizes = st.integers(1, 8)


@settings(max_examples=200)
@given(
    head_size=sizes,
    others=st.lists(sizes, max_size=10),
    free=st.lists(st.integers(0, 8), min_size=1, max_size=5),
)
def test_backfill_never_takes_capacity_from_the_head(
    head_size: int, others: list[int], free: list[int]
) -> None:
    """Invariant: the queue never starves its head. Whatever is placed around a waiting head leaves its
    reserved host untouched, so the head only ever waits for work that ran before it arrived."""
    hosts = [host(f"n{i}", f) for i, f in enumerate(free)]
    items = [queued("head", head_size, at=0)] + [queued(f"o{i}", s, at=i + 1) for i, s in enumerate(others)]
    result = plan(items, hosts)
    if result.head is None:
        return
    order = [item.key for item in order_queue(items, {})]
    behind_head = set(order[order.index(result.head) + 1 :])
    for item, place in result.placements:
        if item.key in behind_head:
            assert place.host_key not in result.reserved_hosts, f"{item.key} backfilled onto the head's host"
    assert result.head not in {item.key for item, _ in result.placements}
