"""Which host ports an environment gets: the lowest free ones of the host's range, per protocol.

Pure, so the rule is testable on its own: the allocator reads the ports in use under the host's lock
and asks here; the README's `ssh -p` example is the first port this gives on a fresh host.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def choose_host_ports(
    protocols: Sequence[str], first: int, last: int, in_use: Iterable[tuple[int, str]]
) -> list[int] | None:
    """A host port in [first, last] for each wanted port (given by its protocol, `tcp` or `udp`), in order.

    Each is the lowest port of its protocol not in `in_use` (pairs of port and protocol) nor chosen
    before it; None when the range runs out.
    """
    taken = {(port, str(protocol)) for port, protocol in in_use}
    next_candidate: dict[str, int] = {}
    chosen: list[int] = []
    for wanted in protocols:
        protocol = str(wanted)
        number = next_candidate.get(protocol, first)
        while number <= last and (number, protocol) in taken:
            number += 1
        if number > last:
            return None
        taken.add((number, protocol))
        next_candidate[protocol] = number + 1
        chosen.append(number)
    return chosen
