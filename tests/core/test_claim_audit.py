"""The claim audit's replay: what counts as two holders at once, and what only looks like it."""

from __future__ import annotations

import datetime as dt
import uuid

from remotegpu.core.capacity.audit import HistoryRow, history_violations

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
HOST = uuid.uuid4()
WORKSPACE = uuid.uuid4()
USER = uuid.uuid4()


def _gpu_row(seq: int, ms: int, txid: int, action: str, environment: uuid.UUID, gpu: uuid.UUID) -> HistoryRow:
    return HistoryRow(
        seq=seq,
        at=T0 + dt.timedelta(milliseconds=ms),
        txid=txid,
        kind="gpu",
        action=action,
        environment_id=environment,
        workspace_id=WORKSPACE,
        user_id=USER,
        host_id=HOST,
        gpu_id=gpu,
        gpu_model="H100",
        host_port=None,
        protocol=None,
    )


def test_a_batch_whose_straggler_claims_a_gpu_released_meanwhile_is_clean() -> None:
    """A scheduling batch (transaction 20) writes its planned claims at 10 ms, then claims a straggler one
    by one at 30 ms on a GPU that transaction 11 released at 20 ms: in order, and clean."""
    planned, straggler, previous = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    gpu, other_gpu = uuid.uuid4(), uuid.uuid4()
    rows = [
        _gpu_row(1, 0, 10, "claim", previous, gpu),
        _gpu_row(2, 10, 20, "claim", planned, other_gpu),
        _gpu_row(3, 20, 11, "release", previous, gpu),
        _gpu_row(4, 30, 20, "claim", straggler, gpu),
    ]
    assert history_violations(rows) == []


def test_a_claim_before_the_release_is_a_violation() -> None:
    holder, racer = uuid.uuid4(), uuid.uuid4()
    gpu = uuid.uuid4()
    rows = [
        _gpu_row(1, 0, 10, "claim", holder, gpu),
        _gpu_row(2, 10, 20, "claim", racer, gpu),
        _gpu_row(3, 20, 11, "release", holder, gpu),
    ]
    problems = history_violations(rows)
    assert len(problems) == 2
    assert problems[0].startswith(f"GPU {gpu} claimed by {racer} while held by {holder}")
