"""Several statements of one transaction in one round trip (psycopg's pipeline mode).

A hot path whose statements must stay apart — a lock, then a read whose snapshot is taken after the
lock is held — pays a round trip for each when sent one by one. In pipeline mode the client sends them
all and then waits once; the server still runs them one after the other, each with a snapshot of its
own (Read Committed takes a statement's snapshot when it is bound, after the previous one finished), so
the semantics are those of the same statements sent one at a time. On a 2-core machine each round trip
also costs both processes a wake-up: fewer of them is what makes the one-by-one allocation fast.

The statements are the same `text()` constants the code executes elsewhere, compiled once for the
connection's dialect; errors come back as SQLAlchemy's exceptions (`IntegrityError`, …), as from
`Connection.execute`.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import RowMaker, tuple_row
from sqlalchemy import Connection, TextClause
from sqlalchemy.exc import DBAPIError

Statement = tuple[TextClause, Mapping[str, Any]]
"""A statement and its parameters, as for `Connection.execute`."""

_compiled: dict[tuple[TextClause, str], Any] = {}
"""Compiled statements by clause (held, so an id is never reused) and dialect."""


@functools.lru_cache(maxsize=512)
def _row_type(names: tuple[str, ...]) -> Any:
    # `rename`: a duplicate or unnamed column (`count`, `?column?`) gets a positional name, as the rows
    # of `Connection.execute` still read those by index
    return collections.namedtuple("Row", names, rename=True)


def _named_rows(cursor: psycopg.Cursor[Any]) -> RowMaker[Any]:
    if cursor.description is None:
        return tuple
    row_type = _row_type(tuple(column.name for column in cursor.description))
    return row_type._make  # type: ignore[no-any-return]


def _compile(connection: Connection, clause: TextClause) -> Any:
    key = (clause, connection.dialect.name)
    compiled = _compiled.get(key)
    if compiled is None:
        compiled = clause.compile(dialect=connection.dialect)
        _compiled[key] = compiled
    return compiled


def run_pipelined(
    connection: Connection, statements: Sequence[Statement], *, named: bool = True
) -> list[list[Any]]:
    """Run `statements` in order inside the connection's transaction, in one round trip; the rows of
    each (named tuples, or plain ones with `named=False`: a read of thousands of rows spends a visible
    part of its time building named ones). Meant for module-level `text()` constants (each compiled
    once and kept). An error names the last statement sent; the server's message says which one failed."""
    raw: psycopg.Connection[Any] = connection.connection.driver_connection  # type: ignore[assignment]
    prepared = []
    for clause, parameters in statements:
        compiled = _compile(connection, clause)
        prepared.append((str(compiled), compiled.construct_params(dict(parameters))))
    cursors = [raw.cursor(row_factory=_named_rows if named else tuple_row) for _ in prepared]
    sql, parameters = prepared[0]
    try:
        with raw.pipeline():
            for cursor, (sql, parameters) in zip(cursors, prepared, strict=True):
                cursor.execute(sql, parameters)
        return [cursor.fetchall() if cursor.description is not None else [] for cursor in cursors]
    except psycopg.Error as error:
        if connection.dialect.is_disconnect(error, connection.connection, None):  # type: ignore[arg-type]
            connection.invalidate(error)  # as `Connection.execute` would: the pool opens a new one
        raise DBAPIError.instance(
            sql, parameters, error, psycopg.Error, hide_parameters=True, dialect=connection.dialect
        ) from error
    finally:
        for cursor in cursors:
            cursor.close()
