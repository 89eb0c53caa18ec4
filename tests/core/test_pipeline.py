"""Statements sent together in one round trip still run one after the other, as SQLAlchemy's would."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DataError

from remotegpu.core.platform.pipeline import run_pipelined

_LOCK = text("SELECT pg_advisory_xact_lock(:key) AS locked")
_HELD = text(
    "SELECT count(*) AS held FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted"
)
_DIVIDE = text("SELECT 1 / :zero AS quotient")


def test_a_later_statement_sees_what_an_earlier_one_did(db: Engine) -> None:
    with db.begin() as connection:
        held_before, _, held_after = run_pipelined(
            connection, [(_HELD, {}), (_LOCK, {"key": 4242}), (_HELD, {})]
        )
    assert (held_before[0].held, held_after[0].held) == (0, 1)


def test_an_error_is_sqlalchemys_and_the_transaction_rolls_back(db: Engine) -> None:
    with pytest.raises(DataError, match="division by zero"), db.begin() as connection:
        run_pipelined(connection, [(_LOCK, {"key": 4243}), (_DIVIDE, {"zero": 0})])
    with db.connect() as connection:
        assert connection.execute(_HELD).scalar_one() == 0


def test_rows_come_as_plain_tuples_when_not_named(db: Engine) -> None:
    with db.connect() as connection:
        (named,), (plain,) = (
            run_pipelined(connection, [(_HELD, {})], named=flag)[0] for flag in (True, False)
        )
    assert (named.held, type(plain), plain) == (0, tuple, (0,))
