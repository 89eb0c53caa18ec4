"""Statements sent together in one round trip still run one after the other, as SQLAlchemy's would,
and compacted they are the same statements."""

from __future__ import annotations

import pytest
from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH
from sqlalchemy import Engine, text
from sqlalchemy.exc import DataError

from remotegpu.core.capacity import claim_write, release
from remotegpu.core.platform.pipeline import compact_sql, run_pipelined

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


def test_compacting_keeps_literals_and_quoted_names_and_drops_comments() -> None:
    sql = (
        "SELECT CAST(%(a)s AS int)IS NULL ,  CAST(%(b)s AS text[]) AS \"odd  -- name\", 'it''s -- kept'\n"
        "  -- the workspace's comment, with a quote\n"
        "  FROM t WHERE x = ( 1 + 2 )"
    )
    assert compact_sql(sql) == (
        "SELECT %(a)s::int IS NULL,%(b)s::text[] AS \"odd  -- name\",'it''s -- kept' FROM t WHERE x=(1+2)"
    )


def test_a_compacted_statement_returns_what_the_written_one_does(db: Engine) -> None:
    written = text(
        """
        SELECT CAST(:n AS int) + 1 AS next,   -- a comment that says 'quoted'
               CAST(:names AS text[]) AS names, 'a  --  b' AS literal, CAST(:missing AS text) IS NULL AS absent
        """
    )
    parameters = {"n": 41, "names": ["x", "it's"], "missing": None}
    with db.connect() as connection:
        (expected,) = connection.execute(written, parameters)
        ((compacted,),) = run_pipelined(connection, [(written, parameters)])
    assert tuple(compacted) == tuple(expected) == (42, ["x", "it's"], "a  --  b", True)


def test_the_hot_statements_fit_psycopgs_parse_cache(db: Engine) -> None:
    """psycopg parses a statement's placeholders on every execution unless it is at most this long."""
    dialect = db.dialect
    for statement in (claim_write._WRITE_CLAIMS_SQL, release._RELEASE_SQL):
        sent = compact_sql(str(statement.compile(dialect=dialect)))
        assert len(sent.encode()) <= MAX_CACHED_STATEMENT_LENGTH, len(sent)


def test_compacting_never_joins_two_operators() -> None:
    assert (
        compact_sql("SELECT a @> +1, b || +c, d >= -1, e = f + g") == "SELECT a @> +1,b || +c,d >= -1,e=f+g"
    )


def test_compacting_leaves_what_it_cannot_read_and_keeps_literals_joined() -> None:
    for sql in ("SELECT /* it's */ 'a  b'", "SELECT E'it\\'s -- x'", "SELECT $$ a  -- b $$"):
        assert compact_sql(sql) == sql
    assert compact_sql("SELECT 'foo'\n   'bar' AS joined") == "SELECT 'foo'\n'bar' AS joined"


def test_zero_column_rows_are_rows(db: Engine) -> None:
    with db.connect() as connection:
        (rows,) = run_pipelined(connection, [(text("SELECT FROM generate_series(1, 2)"), {})])
    assert [tuple(row) for row in rows] == [(), ()]


def test_a_statement_begins_the_callers_transaction_as_execute_would(db: Engine) -> None:
    with db.begin() as connection:
        connection.execute(text("CREATE TABLE pipeline_commit_check (x int)"))
    try:
        with db.connect() as connection:
            run_pipelined(connection, [(text("INSERT INTO pipeline_commit_check VALUES (1)"), {})])
            connection.commit()
        with db.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM pipeline_commit_check")).scalar_one() == 1
    finally:
        with db.begin() as connection:
            connection.execute(text("DROP TABLE pipeline_commit_check"))
