"""Where each waiting environment stands: the queue a scheduling pass publishes, and how readers find
an environment's place in it.

When the head of the queue moves, every waiting environment's position moves with it. Storing the
position on each environment's row made every pass rewrite every waiting row (5,000 wide rows for a
queue of 5,000: most of a pass's time). A pass now publishes its whole ordering in one statement, into
the 256 narrow rows of `queue_buckets`: an environment's entry (position, reason, and the phase entry
the pass saw) lives in the bucket its id's last byte names, in parallel arrays. Reading one place
reads one bucket (a few dozen entries), however deep the queue; one row for the whole queue instead
made every row of a list read the whole queue again (Postgres does not keep a detoasted value between
rows, and a hash join of the unnested queue is not what it plans under a list's `LIMIT`).

An entry holds only while its environment is still where the pass saw it: waiting (the phase a
schedule leaves), wanting to run, and in the same phase entry (`phase_entered_at`, compared for
equality, so no two clocks are compared). An environment placed, stopped or re-queued since the pass
shows no place until the next pass publishes one, as the old columns, cleared on every phase change,
did.

`PLACE_JOIN` gives a statement over environments `e` their place (lists, one environment);
`PLACES_SQL` with `PLACE_HOLDS` is every entry at once (counts over the whole queue).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

from sqlalchemy import Connection, text

from remotegpu.core.environments.lifecycle import Trigger, sources
from remotegpu.core.environments.states import DesiredState, sql_list
from remotegpu.core.platform.pipeline import run_pipelined

BUCKETS = 256

BUCKET_SQL = "get_byte(uuid_send({id}), 15)"
"""An environment's bucket: the last byte of its id (random in a v4 UUID, so buckets fill evenly)."""

_WAITING = sql_list(sources(Trigger.SCHEDULE))

_STILL_WAITING = f"e.phase IN ({_WAITING}) AND e.desired_state = '{DesiredState.RUNNING}'"

PLACE_JOIN = f"""
      LEFT JOIN LATERAL (
            SELECT q.positions[i] AS position, q.reasons[i] AS reason
              FROM queue_buckets q, array_position(q.environment_ids, e.id) AS i
             WHERE q.bucket = {BUCKET_SQL.format(id="e.id")} AND q.entered_at[i] = e.phase_entered_at
               AND {_STILL_WAITING}
      ) qp ON true
"""
"""Joins `qp.position` and `qp.reason` to the environments `e` (NULL where it has no place)."""

PLACES_SQL = """
    SELECT u.environment_id, u.entered_at, u.position, u.reason
      FROM queue_buckets q,
           unnest(q.environment_ids, q.entered_at, q.positions, q.reasons)
           AS u(environment_id, entered_at, position, reason)
"""
"""Every entry of the published queue, whether or not it still holds (join it `ON PLACE_HOLDS`)."""

PLACE_HOLDS = f"qp.environment_id = e.id AND qp.entered_at = e.phase_entered_at AND {_STILL_WAITING}"
"""The join condition of `PLACES_SQL` as `qp` with the environments `e`: the entry still holds."""

# The entries travel as one JSON document, as host sync's rows do (`core.inventory.sync`): psycopg
# quotes a list parameter element by element, which took a pass longer than writing the rows. The
# document is `jsonb` and its rows are materialized, so each entry is parsed once: `json` re-parses an
# element at every `->>`, and the inlined CTE evaluated those in the join and again in each aggregate
# (three times the statement's time for 5,000 entries). Every
# bucket is published, the empty ones too, so no entry of an earlier pass survives; a bucket that did
# not change is left as it is (a queue that does not move writes nothing).
_PUBLISH_SQL = text(
    f"""
    WITH given AS MATERIALIZED (
        SELECT CAST(g.v ->> 0 AS uuid) AS environment_id, CAST(g.v ->> 1 AS timestamptz) AS entered_at,
               CAST(g.v ->> 2 AS int) AS position, g.v ->> 3 AS reason, g.o
          FROM jsonb_array_elements(CAST(:entries AS jsonb)) WITH ORDINALITY AS g(v, o)
    ), entries AS (
        SELECT t.*, {BUCKET_SQL.format(id="t.environment_id")} AS bucket FROM given t
    ), buckets AS (
        SELECT b.bucket,
               coalesce(array_agg(x.environment_id ORDER BY x.o) FILTER (WHERE x.o IS NOT NULL), '{{}}') AS ids,
               coalesce(array_agg(x.entered_at ORDER BY x.o) FILTER (WHERE x.o IS NOT NULL), '{{}}') AS entered,
               coalesce(array_agg(x.position ORDER BY x.o) FILTER (WHERE x.o IS NOT NULL), '{{}}') AS positions,
               coalesce(array_agg(x.reason ORDER BY x.o) FILTER (WHERE x.o IS NOT NULL), '{{}}') AS reasons
          FROM generate_series(0, {BUCKETS - 1}) AS b(bucket) LEFT JOIN entries x ON x.bucket = b.bucket
         GROUP BY b.bucket
    )
    INSERT INTO queue_buckets (bucket, environment_ids, entered_at, positions, reasons, published_at)
    SELECT bucket, ids, entered, positions, reasons, :at FROM buckets
    ON CONFLICT (bucket) DO UPDATE
       SET environment_ids = excluded.environment_ids, entered_at = excluded.entered_at,
           positions = excluded.positions, reasons = excluded.reasons, published_at = excluded.published_at
     WHERE (queue_buckets.environment_ids, queue_buckets.entered_at, queue_buckets.positions, queue_buckets.reasons)
           IS DISTINCT FROM (excluded.environment_ids, excluded.entered_at, excluded.positions, excluded.reasons)
    """
)


QueueEntry = tuple[str, str, int | None, str]
"""One waiting environment as a pass publishes it: id and the phase entry the pass saw
(`phase_entered_at`), both as the server wrote them as text, so they go back unchanged; position (None:
waits for something other than room), reason."""


def publish_queue(connection: Connection, entries: Sequence[QueueEntry], at: dt.datetime) -> None:
    """Replace the published queue by `entries`, each valid for the phase entry it names. The queue's
    only writer: one statement."""
    document = json.dumps(entries if isinstance(entries, list) else list(entries))
    # pipelined: a transaction's BEGIN goes in the same round trip
    run_pipelined(connection, [(_PUBLISH_SQL, {"entries": document, "at": at})])
