"""Worker processes that start their measurement together, for the same-run references of a benchmark."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any


def run_together(
    target: Callable[..., None], workers: int, arguments: tuple[Any, ...], seconds: float
) -> list[Any]:
    """Run `target(*arguments, index, ready, out)` in `workers` forked processes, where `ready` is a
    barrier each waits on before its clock starts (connections opened, nothing measured yet) and `out` a
    queue each puts its result on; returns the results once every process has ended."""
    context = multiprocessing.get_context("fork")
    ready = context.Barrier(workers)
    out = context.Queue()
    processes = [
        context.Process(target=target, args=(*arguments, index, ready, out)) for index in range(workers)
    ]
    for process in processes:
        process.start()
    results = [out.get(timeout=seconds + 120) for _ in processes]
    for process in processes:
        process.join()
    return results
