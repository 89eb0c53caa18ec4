"""The sign-in counters: windows restart once ended, and ended rows do not pile up."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, text

from remotegpu.core.accounts.sign_in_limits import SignInLimits, count_sign_in_attempt
from remotegpu.core.platform import clock

LIMITS = SignInLimits(per_address=1, per_account=5)


def test_an_ended_window_restarts_the_count_and_ended_rows_are_deleted_by_later_sign_ins(db: Engine) -> None:
    with clock.frozen_at(dt.datetime(2030, 1, 1, tzinfo=dt.UTC)) as advance:
        with db.begin() as connection:
            assert count_sign_in_attempt(connection, LIMITS, "10.0.0.1", "a@example.org") is None
            refusal = count_sign_in_attempt(connection, LIMITS, "10.0.0.1", "a@example.org")
        assert refusal is not None
        assert refusal.retry_after_seconds == 60
        advance(dt.timedelta(minutes=1))
        with db.begin() as connection:
            assert count_sign_in_attempt(connection, LIMITS, "10.0.0.1", "a@example.org") is None, "restarted"
        advance(dt.timedelta(hours=1))
        with db.begin() as connection:
            count_sign_in_attempt(connection, LIMITS, "10.0.0.2", "b@example.org")
            rows = connection.execute(text("SELECT count(*) FROM sign_in_counters")).scalar_one()
    assert rows == 2, "only the newest subject's two counters are left"
