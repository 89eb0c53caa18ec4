"""Invoices over HTTP and in the CLI: the current period's draft with its usage so far, the finalized
invoice after the grace time, its CSV, and `remotegpu billing invoices | invoice ID [--csv]`."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, text
from typer.testing import CliRunner

from remotegpu.core.platform import clock
from remotegpu.ops.cli.app import app
from remotegpu.reconciler.invoicing import invoice_tick
from remotegpu.reconciler.loop import Reconciler
from remotegpu.reconciler.metering import meter_tick
from remotegpu.tests.api.conftest import Caller, spec

START = dt.datetime(2026, 11, 30, 22, 0, tzinfo=dt.UTC)
PRICES = {
    ("gpu", "H100"): "2.49",
    ("cpu", None): "0.02",
    ("memory", None): "0.005",
    ("storage", None): "0.10",
}
VOLUME = [{"name": "data", "size": "100Gi", "mount": "/workspace"}]
NOVEMBER = [  # 1 H100, 4 cores, 16 GiB and 100 GiB for two hours
    ["CPU core-hours", "8.000000", "0.16"],
    ["H100 GPU-hours", "2.000000", "4.98"],
    ["Memory GiB-hours", "32.000000", "0.16"],
    ["Storage GiB-months", "0.273973", "0.03"],
]


def _cli_env(caller: Caller, api_url: str, tmp_path: Path) -> dict[str, str | None]:
    api_token = caller.post("/auth/tokens", json={"name": "cli"}).json()["token"]
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("REMOTEGPU_")}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "COLUMNS": "200"}
    return env | {"REMOTEGPU_SERVER_URL": api_url, "REMOTEGPU_TOKEN": api_token}


def test_a_draft_then_the_finalized_invoice_its_csv_and_the_cli(
    engine: Engine,
    reconciler: Reconciler,
    new_user: Callable[[str], Caller],
    api_url: str,
    tmp_path: Path,
) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    assert alice.post("/workspaces", json={"name": "research"}).status_code == 201
    with engine.begin() as connection:
        for (resource, model), price in PRICES.items():
            connection.execute(
                text(
                    "INSERT INTO prices (resource, gpu_model, unit_price, effective_from) VALUES (:r, :m, :p, :t)"
                ),
                {"r": resource, "m": model, "p": Decimal(price), "t": START - dt.timedelta(days=1)},
            )
    with clock.frozen_at(START) as advance:
        applied = alice.post("/environments/apply", json=spec("train", "research", volumes=VOLUME))
        assert applied.status_code == 200, applied.text
        reconciler.run_until_idle()
        advance(dt.timedelta(hours=1))
        meter_tick(reconciler.ctx)
        invoice_tick(reconciler.ctx)
        (draft,) = alice.get("/billing/invoices", params={"workspace": "research"}).json()["items"]
        assert (draft["status"], draft["period_start"][:10], Decimal(draft["total"])) == (
            "draft",
            "2026-11-01",
            Decimal("2.66"),  # one hour so far: 2.49 + 0.08 + 0.08 + 0.0137 (→ 0.01)
        )
        advance(dt.timedelta(hours=3, minutes=5))  # December 1, 01:05: November's grace has passed
        meter_tick(reconciler.ctx)
        assert invoice_tick(reconciler.ctx).finalized == 1
    listed = alice.get("/billing/invoices", params={"workspace": "research"}).json()["items"]
    assert [(i["period_start"][:10], i["status"]) for i in listed] == [
        ("2026-12-01", "draft"),
        ("2026-11-01", "finalized"),
    ]
    invoice_id = listed[1]["id"]
    assert invoice_id == draft["id"], "the draft is the invoice, finalized"
    shown = alice.get(f"/billing/invoices/{invoice_id}").json()
    assert [[x["description"], x["quantity"], x["amount"]] for x in shown["lines"]] == NOVEMBER
    assert Decimal(shown["total"]) == sum(Decimal(x["amount"]) for x in shown["lines"]) == Decimal("5.33")
    assert shown["lines"][1] | {"description": ""} == {
        "description": "",
        "resource": "gpu",
        "gpu_model": "H100",
        "quantity": "2.000000",
        "unit": "gpu_hour",
        "unit_price": "2.490000",
        "amount": "4.98",
        "adjusts_period_start": None,
    }

    as_csv = alice.get(f"/billing/invoices/{invoice_id}.csv")
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert rows[0] == [
        "description",
        "resource",
        "gpu_model",
        "quantity",
        "unit",
        "unit_price",
        "amount",
        "adjusts_period_start",
    ]
    assert [[row[0], row[3], row[6]] for row in rows[1:]] == NOVEMBER
    assert bob.get(f"/billing/invoices/{invoice_id}.csv").status_code == 404
    assert alice.get("/billing/invoices/not-an-id.csv").status_code == 404

    runner = CliRunner()
    env = _cli_env(alice, api_url, tmp_path)
    listing = runner.invoke(app, ["billing", "invoices", "-w", "research"], env=env)
    assert listing.exit_code == 0, listing.output
    assert [invoice_id, "2026-11-01", "–", "2026-12-01", "finalized", "5.33", "USD"] in [
        line.split() for line in listing.output.splitlines()
    ]
    one = runner.invoke(app, ["billing", "invoice", invoice_id], env=env)
    assert one.exit_code == 0, one.output
    printed = [line.split() for line in one.output.splitlines()]
    assert ["H100", "GPU-hours", "2.0", "GPU-h", "2.49", "4.98", "USD"] in printed
    assert ["Storage", "GiB-months", "0.274", "GiB-month", "0.1", "0.03", "USD"] in printed
    assert one.output.rstrip().endswith("Total: 5.33 USD")
    exported = runner.invoke(app, ["billing", "invoice", invoice_id, "--csv"], env=env)
    assert exported.exit_code == 0, exported.output
    assert exported.output == as_csv.text
