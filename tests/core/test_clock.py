"""The injectable clock: aware UTC always, frozen and moved only inside `frozen_at`."""

from __future__ import annotations

import datetime as dt

import pytest

from remotegpu.core.platform import clock


def test_now_is_aware_utc() -> None:
    assert clock.now().utcoffset() == dt.timedelta(0)


def test_frozen_clock_moves_only_when_advanced_and_thaws_after_the_block() -> None:
    moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with clock.frozen_at(moment) as advance:
        assert clock.now() == moment
        advance(dt.timedelta(minutes=5))
        assert clock.now() == moment + dt.timedelta(minutes=5)
    assert clock.now() > dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def test_frozen_clock_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="aware"), clock.frozen_at(dt.datetime(2026, 1, 1)):
        pass
