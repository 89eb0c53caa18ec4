"""The one poll-until helper: returns what it waited for, or fails naming what never happened."""

from __future__ import annotations

import itertools

import pytest

from remotegpu.tests.polling import poll_until


def test_returns_the_first_value_that_holds() -> None:
    counter = itertools.count()
    assert poll_until(lambda: next(counter), 5, "three reads", until=lambda n: n >= 3, interval_s=0) == 3


def test_a_timeout_names_what_was_awaited_and_the_last_value_seen() -> None:
    with pytest.raises(AssertionError, match=r"waiting for the pod to run; last value: 'Pending'"):
        poll_until(lambda: "Pending", 0.05, "the pod to run", until=lambda phase: phase == "Running")


def test_by_default_a_truthy_value_holds() -> None:
    reads = iter([None, [], ["ready"]])
    assert poll_until(lambda: next(reads), 5, interval_s=0) == ["ready"]
