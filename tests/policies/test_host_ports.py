"""The host-port rule on its own: the lowest free ports of the range, per protocol."""

from __future__ import annotations

import pytest

from remotegpu.policies.host_ports import choose_host_ports


@pytest.mark.parametrize(
    ("in_use", "wanted", "expected"),
    [
        (set(), ["tcp", "tcp"], [30000, 30001]),
        ({(30000, "tcp")}, ["tcp"], [30001]),
        ({(30000, "tcp")}, ["udp"], [30000]),
        ({(30000, "tcp"), (30001, "tcp")}, ["tcp"], None),
        (set(), ["tcp", "udp", "tcp"], [30000, 30000, 30001]),
        ({(30001, "udp")}, ["udp", "udp"], None),
    ],
)
def test_host_ports_are_the_lowest_free_per_protocol(
    in_use: set[tuple[int, str]], wanted: list[str], expected: list[int] | None
) -> None:
    assert choose_host_ports(wanted, 30000, 30001, in_use) == expected


def test_chosen_ports_are_not_taken_again_and_in_use_is_left_as_it_was() -> None:
    in_use = {(30000, "tcp")}
    assert choose_host_ports(["tcp", "tcp"], 30000, 30099, in_use) == [30001, 30002]
    assert in_use == {(30000, "tcp")}
