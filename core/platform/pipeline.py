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

Two costs of the client's own are kept off the hot path. psycopg parses every statement for its
placeholders on each execution and caches that parse only for statements of at most 4 KiB: the claim
write and the release were longer, and parsing them anew cost 125 and 64 µs each time. A compiled
statement is therefore sent compacted (comments dropped, whitespace collapsed, casts of
parameters written `%(name)s::type`), once per statement and process (`compact_sql`). And rows are
named from the result's field names, not from `cursor.description`, which builds a column object per
field for every result.
"""

from __future__ import annotations

import collections
import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.pq import ExecStatus
from psycopg.rows import RowMaker, tuple_row
from sqlalchemy import Connection, TextClause
from sqlalchemy.exc import DBAPIError

_ROWS = (ExecStatus.TUPLES_OK, ExecStatus.SINGLE_TUPLE, ExecStatus.TUPLES_CHUNK)

Statement = tuple[TextClause, Mapping[str, Any]]
"""A statement and its parameters, as for `Connection.execute`."""

_compiled: dict[tuple[TextClause, str], tuple[str, Any]] = {}
"""Compiled statements (as sent, and compiled) by clause (held, so an id is never reused) and dialect."""


_TOKEN = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*)""")
"""What is not compacted, as the server's lexer reads it from the left: string literals and quoted
identifiers (kept as written), and comments (dropped)."""
_NOT_PARSED = re.compile(r"\$|/\*|(?<!\w)[eE]'")
"""What `_TOKEN` does not read as the server does (dollar quotes, block comments, backslash escapes):
a statement with any of them is sent as written."""
_SPACE = re.compile(r"[ \t\n\r\f\v]+")
"""Postgres's whitespace (Python's `\\s` also matches characters Postgres reads as part of a name)."""
_AROUND_PUNCTUATION = re.compile(r" ?([(),]) ?|(?<=[\w)]) ?([=+]) ?(?=[\w(']|%\()")
"""Spaces that separate nothing: around parentheses and commas (never part of an operator), and around
`=` and `+` between names, numbers, parameters or parentheses (next to another operator character the
space may be what keeps two operators apart: `@> +1` is not `@>+1`, nor `!= -1` `!=-1`)."""
_PARAMETER_CAST = re.compile(r"CAST\((%\(\w+\)s) AS ([\w\[\]]+)\)")


def compact_sql(sql: str) -> str:
    """`sql` (compiled: parameters as `%(name)s`) without comments and with as little whitespace as the
    statement needs, the same statement to the server; one `_TOKEN` cannot read is returned as is."""
    if _NOT_PARSED.search(sql):
        return sql
    pieces: list[str] = []
    code: list[str] = []
    for index, piece in enumerate(_TOKEN.split(sql)):
        if index % 2 == 0 or piece.startswith("--"):
            code.append(piece if index % 2 == 0 else " ")
            continue
        pieces.extend((_compact_code("".join(code)), piece))
        code = []
    pieces.append(_compact_code("".join(code)))
    return "".join(pieces).strip()


def _compact_code(code: str) -> str:
    if not code.strip():
        # between two literals a line break is what joins them ('a'\n'b' is 'ab'; 'a' 'b' an error)
        return "\n" if "\n" in code else code[:1]
    code = _PARAMETER_CAST.sub(_as_cast, _SPACE.sub(" ", code))
    return _AROUND_PUNCTUATION.sub(lambda match: match[1] or match[2], code)


def _as_cast(match: re.Match[str]) -> str:
    """`CAST(%(name)s AS type)` as `%(name)s::type`, apart from a word that followed the parenthesis."""
    following = match.string[match.end() : match.end() + 1]
    return f"{match[1]}::{match[2]}" + (" " if following.isalnum() or following == "_" else "")


@functools.lru_cache(maxsize=512)
def _row_type(names: tuple[bytes | None, ...]) -> Any:
    # `rename`: a duplicate or unnamed column (`count`, `?column?`) gets a positional name, as the rows
    # of `Connection.execute` still read those by index
    return collections.namedtuple("Row", [(name or b"").decode() for name in names], rename=True)


def _named_rows(cursor: psycopg.Cursor[Any]) -> RowMaker[Any]:
    result = cursor.pgresult
    if result is None or not _has_rows(cursor):
        return tuple
    row_type = _row_type(tuple(result.fname(index) for index in range(result.nfields)))
    return row_type._make  # type: ignore[no-any-return]


def _has_rows(cursor: psycopg.Cursor[Any]) -> bool:
    """Whether the statement returns rows, zero-column ones included (as `cursor.description is not
    None`, without building its columns)."""
    result = cursor.pgresult
    return result is not None and result.status in _ROWS


def _compile(connection: Connection, clause: TextClause) -> tuple[str, Any]:
    """The statement as sent (compacted) and its compiled form (which builds its parameters)."""
    key = (clause, connection.dialect.name)
    compiled = _compiled.get(key)
    if compiled is None:
        statement = clause.compile(dialect=connection.dialect)
        compiled = (compact_sql(str(statement)), statement)
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
    if not raw.autocommit and not connection.in_transaction():
        connection.begin()  # as `Connection.execute` begins one: the caller's `commit()` then commits
    prepared = []
    for clause, parameters in statements:
        sql, compiled = _compile(connection, clause)
        prepared.append((sql, compiled.construct_params(dict(parameters))))
    cursors = [raw.cursor(row_factory=_named_rows if named else tuple_row) for _ in prepared]
    sql, parameters = prepared[0]
    try:
        with raw.pipeline():
            for cursor, (sql, parameters) in zip(cursors, prepared, strict=True):
                cursor.execute(sql, parameters)
        return [cursor.fetchall() if _has_rows(cursor) else [] for cursor in cursors]
    except psycopg.Error as error:
        if connection.dialect.is_disconnect(error, connection.connection, None):  # type: ignore[arg-type]
            connection.invalidate(error)  # as `Connection.execute` would: the pool opens a new one
        raise DBAPIError.instance(
            sql, parameters, error, psycopg.Error, hide_parameters=True, dialect=connection.dialect
        ) from error
    finally:
        for cursor in cursors:
            cursor.close()
