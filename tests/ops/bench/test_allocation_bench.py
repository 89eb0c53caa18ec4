"""The allocation benchmark runs end to end on a small inventory and audits clean."""

from __future__ import annotations

import io
import json
import uuid

import psycopg
from rich.console import Console
from sqlalchemy.engine import URL

from remotegpu.ops.bench import claim_ceiling, claim_lean
from remotegpu.ops.bench.allocation import PARTS, BenchConfig, _seed, run
from remotegpu.ops.bench.database import bench_database
from remotegpu.tests.ops.bench.same_run import CALIBRATION, assert_same_run_figures
from remotegpu.tests.ops.test_cli import _run

EXPECTED = {"claims_per_s", "gpus_per_s", "p50_ms", "p99_ms", "retries", "violations"}
SAME_RUN = (
    "ceiling_claims_per_s",
    "ceiling_bare_cycle_claims_per_s",
    "ceiling_lean_claims_per_s",
    "ratio_claims",
    "ratio_bare_cycle",
    "ratio_lean",
    "ratio_claims_to_lean",
    *CALIBRATION,
)


def test_small_run_reports_every_figure_and_no_violation() -> None:
    output = io.StringIO()
    figures = run(
        console=Console(file=output, width=120),
        config=BenchConfig(
            hosts=10,
            gpus_per_host=8,
            workers=2,
            seconds=1.5,
            workspaces=3,
            environments_per_worker=40,
            ceiling_seconds=0.5,
        ),
    )
    assert set(figures) >= EXPECTED
    assert_same_run_figures(figures, SAME_RUN, output.getvalue())
    assert figures["violations"] == 0
    assert figures["claims"] > 0
    assert figures["releases"] > 0, "the mix must release as well as allocate"
    assert figures["lean_releases"] > 0, "the lean reference runs the same mix"
    assert figures["bare_cycle_releases"] > 0, "so does the bare claim-and-release"
    assert figures["p99_ms"] >= figures["p50_ms"] > 0
    means = [figures[f"mean_ms_{part}"] for part in PARTS]
    tails = [figures[f"tail_ms_{part}"] for part in PARTS]
    assert min(means) > 0, "each round trip of an allocation takes time"
    assert sum(tails) >= sum(means), "the slowest allocations' parts add up to more than the average's"
    assert "claims_per_s" in output.getvalue()
    json.dumps(figures)


def test_batch_run_compares_with_one_by_one_in_the_same_run() -> None:
    output = io.StringIO()
    figures = run(
        console=Console(file=output, width=120),
        config=BenchConfig(
            hosts=10,
            gpus_per_host=8,
            workers=1,
            seconds=1.0,
            workspaces=3,
            environments_per_worker=40,
            ceiling_seconds=0.3,
            batch_size=8,
        ),
    )
    assert_same_run_figures(figures, SAME_RUN, output.getvalue())
    assert figures["path"] == "batch of 8"
    assert figures["violations"] == 0
    assert figures["claims"] > 0
    assert figures["releases"] > 0, "the batch path must release as well as allocate"
    assert figures["one_by_one_claims_per_s"] > 0
    assert figures["ratio_batch_to_one_by_one"] > 0
    assert "mean_ms_write" not in figures, "a batch's parts are not an allocation's"


def test_unknown_benchmark_is_a_one_line_error() -> None:
    result = _run("bench", "teleport")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "error: unknown benchmark 'teleport'; choose one of: allocation, reconcile, shards, api, billing, scheduling"
    )


def test_bare_cycle_releases_as_the_benchmark_does_and_holds_no_more_than_its_share() -> None:
    with bench_database("remotegpu_test_bare_cycle") as url:
        _seed(url, BenchConfig(hosts=4, gpus_per_host=8, workers=2, workspaces=2, environments_per_worker=2))
        claims_per_s, releases = claim_ceiling.cycle_claims_per_s(url, workers=2, share=3, seconds=0.3)
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo) as connection:
            row = connection.execute(
                f"SELECT count(*) FROM {claim_ceiling.TABLE} WHERE holder IS NOT NULL"
            ).fetchone()
    assert claims_per_s > 0
    claims = round(claims_per_s * 0.3)  # the rate is rounded to 0.1/s: the count is the nearest integer
    # each worker releases one of its holdings before claiming past three GPUs
    assert releases >= claims - 2 * 3
    assert row is not None
    assert 0 < row[0] <= 2 * 3


def _lean_claims(url: URL) -> tuple[str, list[tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID, int]]]:
    """A seeded inventory with the lean tables and a few lean claims made; returns the conninfo and
    the claims (environment, workspace, user, host, GPUs)."""
    _seed(url, BenchConfig(hosts=4, workers=1, workspaces=2, environments_per_worker=1))
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    tenants = claim_lean._prepare(conninfo)
    claims: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID, int]] = []
    with psycopg.connect(conninfo, autocommit=True) as connection:
        for index in range(6):
            workspace, user = tenants[index % len(tenants)]
            env = uuid.uuid4()
            row = connection.execute(
                "SELECT lean_claim(%s, %s, %s, 2, 8000, 0, 2)", (env, workspace, user)
            ).fetchone()
            assert row is not None
            assert row[0] is not None
            claims.append((env, workspace, user, row[0], 2))
    return conninfo, claims


def test_lean_reference_keeps_its_counters_and_its_check_catches_a_drift() -> None:
    with bench_database("remotegpu_test_lean") as url:
        conninfo, claims = _lean_claims(url)
        with psycopg.connect(conninfo, autocommit=True) as connection:
            env, workspace, user, host, _ = claims[0]
            freed = connection.execute(
                "SELECT lean_release(%s, %s, %s, %s, 8000, 0)", (env, workspace, user, host)
            ).fetchone()
            assert freed == (2,)
            held = connection.execute("SELECT count(*) FROM lean_gpus WHERE holder IS NOT NULL").fetchone()
            assert held == (10,)
            ports = connection.execute("SELECT sum(ports_claimed) FROM lean_hosts").fetchone()
            assert ports == (10,)
        assert claim_lean.check(conninfo) == []

    with bench_database("remotegpu_test_lean") as url:
        conninfo, claims = _lean_claims(url)
        with psycopg.connect(conninfo, autocommit=True) as connection:
            _, workspace, _, host, _ = claims[0]
            connection.execute("UPDATE lean_hosts SET free_gpus = free_gpus + 1 WHERE id = %s", (host,))
            connection.execute(
                "UPDATE lean_quotas SET running = running + 1 WHERE subject = %s", (workspace,)
            )
            connection.execute("UPDATE lean_gpus SET holder = NULL WHERE holder = %s", (claims[1][0],))
        assert claim_lean.check(conninfo) == [
            "lean: a host's counters differ from its held GPU and port rows",
            "lean: a quota's counters differ from the audit's claims held by its subject",
            "lean: the audit's held GPUs and ports differ from the held rows",
        ]
