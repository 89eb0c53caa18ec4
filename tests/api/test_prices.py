"""The price list over HTTP and through the CLI: platform admins set prices from now or a later time,
anyone signed in reads what is in force and what is scheduled; bad input is a 422 naming its field."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner, Result

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.ops.cli.app import app
from remotegpu.ops.cli.client.prices import parse_price
from remotegpu.tests.allocation_world import make_host
from remotegpu.tests.api.conftest import Caller

PRICES = "/billing/prices"


@pytest.fixture
def inventory(engine: Engine) -> None:
    """GPUs of two models, so H100 and A100 prices are accepted."""
    with engine.begin() as connection:
        make_host(connection, gpus=2, model="H100")
        make_host(connection, gpus=2, model="A100")


def _later(days: int = 30) -> str:
    moment = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=days)
    return moment.isoformat().replace("+00:00", "Z")


def _field(answer: Any) -> str:
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["errors"]
    return str(error["field"])


def _by_key(items: list[dict[str, Any]]) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(p["resource"], p["gpu_model"]): p for p in items}


@pytest.mark.usefixtures("inventory")
def test_admin_sets_current_and_scheduled_prices_that_anyone_reads(
    admin: Caller, new_user: Callable[[str], Caller], engine: Engine
) -> None:
    now_prices = [
        {"resource": "gpu", "gpu_model": "H100", "unit_price": "2.49"},
        {"resource": "gpu", "gpu_model": "A100", "unit_price": 1.5},
        {"resource": "cpu", "unit_price": "0.02"},
        {"resource": "memory", "unit_price": "0.005"},
        {"resource": "storage", "unit_price": "0.10"},
    ]
    answer = admin.put(PRICES, json={"effective_from": None, "prices": now_prices})
    assert answer.status_code == 200, answer.text
    later = _later()
    scheduled = admin.put(
        PRICES,
        json={
            "effective_from": later,
            "prices": [
                {"resource": "gpu", "gpu_model": "H100", "unit_price": "2.99"},
                {"resource": "cpu", "unit_price": "0.03"},
            ],
        },
    )
    assert scheduled.status_code == 200, scheduled.text

    listed = new_user("reader").get(PRICES)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["currency"] == "USD"
    current = _by_key(body["current"])
    assert set(current) == {
        ("gpu", "H100"),
        ("gpu", "A100"),
        ("cpu", None),
        ("memory", None),
        ("storage", None),
    }
    assert [p["resource"] for p in body["current"]] == ["gpu", "gpu", "cpu", "memory", "storage"]
    units = {key: p["unit"] for key, p in current.items()}
    assert units == {
        ("gpu", "H100"): "gpu_hour",
        ("gpu", "A100"): "gpu_hour",
        ("cpu", None): "core_hour",
        ("memory", None): "gib_hour",
        ("storage", None): "gib_month",
    }
    assert isinstance(current["gpu", "H100"]["unit_price"], str)
    assert Decimal(current["gpu", "H100"]["unit_price"]) == Decimal("2.49")
    assert Decimal(current["gpu", "A100"]["unit_price"]) == Decimal("1.5")
    assert Decimal(current["storage", None]["unit_price"]) == Decimal("0.10")
    assert _by_key(body["scheduled"]).keys() == {("gpu", "H100"), ("cpu", None)}
    for item in body["scheduled"]:
        assert dt.datetime.fromisoformat(item["effective_from"]) == dt.datetime.fromisoformat(later)
    assert Decimal(_by_key(body["scheduled"])["gpu", "H100"]["unit_price"]) == Decimal("2.99")

    # The same resource, model and time again replaces the scheduled price (PUT is idempotent).
    corrected = admin.put(
        PRICES,
        json={
            "effective_from": later,
            "prices": [{"resource": "gpu", "gpu_model": "H100", "unit_price": "2.89"}],
        },
    )
    assert corrected.status_code == 200, corrected.text
    again = _by_key(corrected.json()["scheduled"])
    assert len(corrected.json()["scheduled"]) == 2
    assert Decimal(again["gpu", "H100"]["unit_price"]) == Decimal("2.89")

    with engine.connect() as connection:
        events = connection.execute(
            text("SELECT actor_user_id, data FROM events WHERE reason = 'PricesSet' ORDER BY seq")
        ).all()
    assert len(events) == 3  # one per request, whatever the number of prices
    assert all(e.actor_user_id == admin.user_id for e in events)
    assert len(events[0].data["prices"]) == 5


@pytest.mark.usefixtures("inventory")
def test_bad_prices_are_refused_naming_the_field(admin: Caller) -> None:
    cpu = {"resource": "cpu", "unit_price": "0.02"}
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    answer = admin.put(PRICES, json={"effective_from": past, "prices": [cpu]})
    assert _field(answer) == "$.effective_from"
    assert "retroactive" in answer.json()["detail"]
    assert _field(admin.put(PRICES, json={"effective_from": "2099-01-01T00:00:00", "prices": [cpu]})) == (
        "$.effective_from"
    )
    negative = admin.put(PRICES, json={"prices": [cpu, {"resource": "memory", "unit_price": "-0.01"}]})
    assert _field(negative) == "$.prices[1].unit_price"
    assert "negative" in negative.json()["detail"]
    assert _field(admin.put(PRICES, json={"prices": [{"resource": "cpu", "unit_price": "NaN"}]})) == (
        "$.prices[0].unit_price"
    )
    assert _field(admin.put(PRICES, json={"prices": [{"resource": "cpu", "unit_price": "0.0000001"}]})) == (
        "$.prices[0].unit_price"
    )
    unknown = admin.put(
        PRICES, json={"prices": [{"resource": "gpu", "gpu_model": "B200", "unit_price": "5"}]}
    )
    assert _field(unknown) == "$.prices[0].gpu_model"
    assert "A100, H100" in unknown.json()["detail"]
    assert _field(admin.put(PRICES, json={"prices": [{"resource": "gpu", "unit_price": "5"}]})) == (
        "$.prices[0].gpu_model"
    )
    with_model = admin.put(
        PRICES, json={"prices": [{"resource": "cpu", "gpu_model": "H100", "unit_price": "1"}]}
    )
    assert _field(with_model) == "$.prices[0].gpu_model"
    assert _field(admin.put(PRICES, json={"prices": [cpu, cpu]})) == "$.prices[1]"
    assert _field(admin.put(PRICES, json={"prices": []})) == "$.prices"
    assert _field(admin.put(PRICES, json={"prices": [cpu], "currency": "EUR"})) == "$.currency"
    assert _field(admin.put(PRICES, json={"prices": [{**cpu, "per": "hour"}]})) == "$.prices[0].per"
    assert _field(admin.put(PRICES, json={"prices": [{"resource": "network", "unit_price": "1"}]})) == (
        "$.prices[0].resource"
    )
    assert admin.get(PRICES).json() == {"currency": "USD", "current": [], "scheduled": []}


@pytest.mark.usefixtures("inventory")
def test_only_platform_admins_set_prices(new_user: Callable[[str], Caller], anonymous: Any) -> None:
    body = {"prices": [{"resource": "cpu", "unit_price": "0.02"}]}
    assert new_user("mallory").put(PRICES, json=body).status_code == 403
    assert anonymous.put(PRICES, json=body).status_code == 401
    assert anonymous.get(PRICES).status_code == 401


def _cli(api_url: str, tmp_path: Path, caller: Caller) -> Callable[..., Result]:
    token = caller.post("/auth/tokens", json={"name": "cli-test"}).json()["token"]
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("REMOTEGPU_")}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "COLUMNS": "200"}
    env |= {"REMOTEGPU_SERVER_URL": api_url, "REMOTEGPU_TOKEN": token}
    return lambda *args: CliRunner().invoke(app, list(args), env=env)


@pytest.mark.usefixtures("inventory")
def test_cli_sets_and_lists_prices(api_url: str, tmp_path: Path, admin: Caller) -> None:
    run = _cli(api_url, tmp_path, admin)
    empty = run("prices", "list")
    assert empty.exit_code == 0, empty.output
    assert "no prices set" in empty.stdout

    made = run("prices", "set", "H100=2.49/h", "cpu=0.02/h", "memory=0.005/h", "storage=0.10/month")
    assert made.exit_code == 0, made.output
    assert "2.49 USD / GPU-hour" in made.stdout
    assert "0.10 USD / GiB-month" in made.stdout
    later = run("prices", "set", "H100=2.99/hour", "--from", "2099-12-01")
    assert later.exit_code == 0, later.output

    listed = run("prices", "list")
    assert listed.exit_code == 0, listed.output
    assert "In force now" in listed.stdout
    assert "Scheduled" in listed.stdout
    assert "0.005 USD / GiB-hour" in listed.stdout
    assert "2099-12-01" in listed.stdout
    as_json = json.loads(run("prices", "list", "-o", "json").stdout)
    assert [p["gpu_model"] for p in as_json["scheduled"]] == ["H100"]
    assert as_json["scheduled"][0]["effective_from"].startswith("2099-12-01T00:00:00")

    refused = run("prices", "set", "B200=5/h")
    assert refused.exit_code == 1
    assert "H100" in str(refused.exception)


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("storage=0.10/h", "storage is priced per GiB-month: end the price with /month"),
        ("cpu=0.02", "cpu is priced per core-hour: end the price with /h"),
        ("H100=2.49/month", "end the price with /h, e.g. H100=2.49/h"),
        ("memory=cheap/h", "is not a decimal number"),
        ("gpu=2/h", "name it, e.g. H100=2.49/h"),
        ("H100", "write RESOURCE=PRICE/UNIT"),
    ],
)
def test_a_price_item_the_cli_cannot_read_is_one_line_naming_it(
    item: str, says: str, api_url: str, tmp_path: Path, admin: Caller
) -> None:
    with pytest.raises(RemoteGPUError) as parsed:
        parse_price(item)
    assert says in str(parsed.value)
    refused = _cli(api_url, tmp_path, admin)("prices", "set", "cpu=0.02/h", item)
    assert refused.exit_code == 1
    message = str(refused.exception)
    assert isinstance(refused.exception, RemoteGPUError)
    assert "\n" not in message
    assert repr(item) in message
    assert says in message
    assert admin.get(PRICES).json()["current"] == []  # nothing was sent


def test_parse_price_reads_each_resource() -> None:
    assert parse_price("H100=2.49/h") == {"resource": "gpu", "gpu_model": "H100", "unit_price": "2.49"}
    assert parse_price("CPU=0.02/h") == {"resource": "cpu", "unit_price": "0.02"}
    assert parse_price("storage=0.10/month") == {"resource": "storage", "unit_price": "0.10"}
