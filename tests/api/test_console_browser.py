"""The web console in a real browser: Debian's Chromium, driven by Playwright, against `remotegpu dev`'s
own stack (Postgres, the simulated cluster, a reconciler, the API). One stack and one browser for the
module. Screenshots go to the test's folder (`console_shots`); the README's is `docs/console.png`.

Without `/usr/bin/chromium` these tests fail: CI installs it (`.ci/run`).
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from sqlalchemy import text
from sqlalchemy.engine import URL

from remotegpu.core.billing.periods import next_period_start, period_start
from remotegpu.core.cluster.driver import workload_name
from remotegpu.core.platform.db import make_engine
from remotegpu.core.platform.settings import Settings
from remotegpu.ops.bootstrap import DEV_ADMIN_EMAIL
from remotegpu.ops.devstack import DevStack, running_dev_stack
from remotegpu.ops.postgres import create_fresh_database, drop_database
from remotegpu.tests.polling import poll_until

CHROMIUM = Path("/usr/bin/chromium")
IMAGE = "nvcr.io/nvidia/pytorch:24.05-py3"
BROKEN_IMAGE = "registry.example.org/never/pulls:1"
OUTSIDER = ("bob@example.org", "bob", "a long enough password 1")
LIVE_S = 60_000  # ms: the reconciler and the simulated kubelet take a few seconds
expect.set_options(timeout=LIVE_S)


@dataclass(frozen=True)
class World:
    stack: DevStack
    url: str
    admin_password: str
    admin: httpx.Client
    shots: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def world(postgres_server_url: URL, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    database = create_fresh_database(postgres_server_url, "remotegpu_console")
    data_dir = tmp_path_factory.mktemp("console")
    settings = Settings(
        database_url=database.render_as_string(hide_password=False),
        data_dir=data_dir / ".remotegpu",
        api_port=_free_port(),
        meter_seconds=1,  # usage closes into intervals (and a draft invoice) within seconds
        meter_close_seconds=0,
    )
    try:
        with running_dev_stack(settings) as stack:
            assert stack.admin_password_file is not None
            assert stack.api_url is not None
            password = stack.admin_password_file.read_text().strip()
            with httpx.Client(base_url=f"{stack.api_url}/api/v1", timeout=30) as admin:
                tokens = admin.post("/auth/login", json={"email": DEV_ADMIN_EMAIL, "password": password})
                admin.headers["Authorization"] = f"Bearer {tokens.json()['access_token']}"
                assert admin.post("/workspaces", json={"name": "lab"}).status_code == 201
                email, username, secret = OUTSIDER
                registered = admin.post(
                    "/auth/register", json={"email": email, "username": username, "password": secret}
                )
                assert registered.status_code == 201, registered.text
                shots = data_dir / "console_shots"
                shots.mkdir()
                yield World(stack, stack.api_url, password, admin, shots)
    finally:
        drop_database(database)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "the console tests need Debian's chromium: apt-get install chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


def _context(browser: Browser, world: World, **options: object) -> BrowserContext:
    context = browser.new_context(
        base_url=world.url,
        viewport={"width": 1280, "height": 800},
        timezone_id="Asia/Tokyo",
        locale="en-GB",
        **options,  # type: ignore[arg-type]
    )
    context.set_default_timeout(LIVE_S)
    return context


def _sign_in(page: Page, email: str, password: str) -> None:
    page.goto("/ui/")
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/ui/environments"))


def _tab_to(page: Page, selector: str, presses: int = 60) -> None:
    """Press Tab until the element `selector` names has the keyboard focus."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement === document.querySelector(s)", selector):
            return
    pytest.fail(f"{selector} is not reachable by keyboard within {presses} Tab presses")


def _status(page: Page, path: str) -> int:
    answer = page.goto(path)
    assert answer is not None
    return answer.status


def _environment_id(page: Page) -> uuid.UUID:
    match = re.search(r"/ui/environments/([0-9a-f-]{36})$", page.url)
    assert match is not None, page.url
    return uuid.UUID(match[1])


def test_user_creates_watches_reaches_and_removes_an_environment(browser: Browser, world: World) -> None:
    context = _context(browser, world)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=world.url)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    _sign_in(page, DEV_ADMIN_EMAIL, world.admin_password)

    # a bad field: its error stands beside it, and the other inputs keep what was typed
    page.get_by_role("link", name="New environment").click()
    form = page.locator("#create-form")
    form.get_by_label("Name", exact=True).fill("box")
    form.get_by_label("Image", exact=True).fill(IMAGE)
    form.get_by_label("Memory", exact=True).fill("lots")
    form.get_by_role("button", name="Preview (dry run)").click()
    error = page.locator('[data-error-for="resources.memory"]')
    expect(error).to_be_visible()
    expect(page.locator("#f-resources-memory")).to_have_attribute("aria-invalid", "true")
    assert page.locator("#f-resources-memory + .field-error").count() == 1  # right beside its input
    expect(form.get_by_label("Name", exact=True)).to_have_value("box")
    page.screenshot(path=world.shots / "field-error.png", full_page=True)

    # the dry run's diff, then apply
    form = page.locator("#create-form")
    form.get_by_label("Memory", exact=True).fill("16Gi")
    form.get_by_role("button", name="Preview (dry run)").click()
    expect(page.locator("#outcome")).to_have_text("created")
    expect(page.locator("#diff .add", has_text="name: box")).to_be_visible()
    page.screenshot(path=world.shots / "dry-run.png", full_page=True)
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"/ui/environments/[0-9a-f-]{36}$"))
    environment = _environment_id(page)

    # the list turns running without a reload (a marker on the window survives only without one)
    page.goto("/ui/environments?workspace=lab")
    page.evaluate("window.notReloaded = true")
    row = page.locator('tr[data-environment="box"]')
    expect(row.locator("[data-phase]")).to_have_text("running")
    assert page.evaluate("window.notReloaded") is True
    expect(row.locator("time")).to_contain_text(re.compile(r"GMT\+9|JST"))  # the viewer's time zone

    # its SSH command, copied
    row.get_by_role("link", name="box").click()
    ssh = page.locator('.access[data-kind="ssh"] code')
    expect(ssh).to_contain_text("ssh ")
    page.bring_to_front()  # the clipboard answers only the focused page
    _tab_to(page, '.access[data-kind="ssh"] button')  # by keyboard: Tab until it has the focus, then Enter
    page.keyboard.press("Enter")
    expect(page.locator('.access[data-kind="ssh"] button')).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == ssh.inner_text().strip()

    # its log tail, streamed
    assert world.stack.simulated_cluster is not None
    world.stack.simulated_cluster.write_log(workload_name(environment), "epoch 1: loss 0.42")
    expect(page.locator("#log")).to_contain_text("epoch 1: loss 0.42")
    page.screenshot(path=world.shots / "environment.png", full_page=True)

    # stop, then delete (each asks first)
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#phase")).to_have_text("stopped")
    page.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(r"/ui/environments\?workspace=lab"))
    expect(page.locator('tr[data-environment="box"]')).to_have_count(0)

    # pasted YAML: field errors name the path, then the diff, then it exists
    page.goto("/ui/environments/new?workspace=lab")
    yaml_box = page.locator("#yaml-form").get_by_label(re.compile("Spec"))
    yaml_box.fill(f"name: from-yaml\nimage: {IMAGE}\nresources: {{gpus: 1, cpu: 2, memroy: 8Gi}}\n")
    page.locator("#yaml-form").get_by_role("button", name="Preview (dry run)").click()
    expect(page.locator('[data-error-for="yaml"]')).to_contain_text("memroy")
    yaml_box = page.locator("#yaml-form").get_by_label(re.compile("Spec"))
    yaml_box.fill(
        f"name: from-yaml\nimage: {IMAGE}\nresources: {{gpus: 1, cpu: 2, memory: 8Gi}}\naccess: [ssh]\n"
    )
    page.locator("#yaml-form").get_by_role("button", name="Preview (dry run)").click()
    expect(page.locator("#diff .add", has_text="name: from-yaml")).to_be_visible()
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("h1")).to_have_text("lab/from-yaml")
    expect(page.locator("#phase")).to_have_text("running")
    context.close()


def test_a_user_of_another_workspace_sees_none_of_it(browser: Browser, world: World) -> None:
    spec = {
        "name": "private",
        "workspace": "lab",
        "image": IMAGE,
        "resources": {"gpus": 0, "cpu": 1, "memory": "1Gi"},
    }
    created = world.admin.post("/environments/apply", json=spec)
    assert created.status_code == 200, created.text
    private = created.json()["environment"]["id"]
    context = _context(browser, world)
    page = context.new_page()
    email, _, password = OUTSIDER
    _sign_in(page, email, password)
    expect(page.locator("#environment-rows")).to_contain_text("No environments yet.")
    expect(page.locator("#environment-rows")).not_to_contain_text("private")
    assert _status(page, f"/ui/environments/{private}") == 404  # not even told it exists
    assert _status(page, "/ui/ops") == 403
    expect(page.get_by_role("link", name="Ops")).to_have_count(0)
    assert _status(page, "/ui/workspaces") == 200
    expect(page.locator("main")).not_to_contain_text("lab")
    context.close()


def test_admin_sees_the_grid_follow_a_cordon_and_a_stuck_environment_flagged(
    browser: Browser, world: World
) -> None:
    assert world.stack.simulated_cluster is not None
    world.stack.simulated_cluster.fail_image_pulls(BROKEN_IMAGE)
    spec = {
        "name": "stuck",
        "workspace": "lab",
        "image": BROKEN_IMAGE,
        "resources": {"gpus": 1, "cpu": 1, "memory": "1Gi"},
    }
    assert world.admin.post("/environments/apply", json=spec).status_code == 200
    host = world.admin.get("/hosts").json()["items"][-1]

    context = _context(browser, world)
    page = context.new_page()
    _sign_in(page, DEV_ADMIN_EMAIL, world.admin_password)
    page.get_by_role("link", name="Ops").click()
    expect(page.locator("#ops-summary [data-shard='0']")).to_contain_text("epoch")
    row = page.locator(f'#ops-grid tr[data-host="{host["name"]}"]')
    expect(row.locator(".cell").first).to_have_attribute("data-state", re.compile("free|claimed"))
    page.evaluate("window.notReloaded = true")

    world.admin.post(f"/hosts/{host['id']}/cordon", json={"reason": "fan failure"})
    expect(row.locator(".host-state")).to_contain_text("cordoned (fan failure)")
    expect(row.locator('.cell[data-state="cordoned"]').first).to_be_visible()
    title = row.locator(".cell").first.get_attribute("title") or ""
    assert host["name"] in title
    assert "GPU 0" in title

    claimed = page.locator('#ops-grid .cell[data-state="claimed"]').first
    expect(claimed).to_have_attribute("title", re.compile(r"GPU \d+ \(H100\): claimed by lab/"))  # the hover

    flagged = page.locator('#ops-trouble tr.flagged[data-environment="stuck"]')
    expect(flagged).to_contain_text(re.compile("ErrImagePull|ImagePullBackOff"))
    assert page.evaluate("window.notReloaded") is True
    page.screenshot(path=world.shots / "ops.png", full_page=True)
    page.screenshot(path=world.shots / "console.png")  # the README's, at 1280×800 (docs/console.png)

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: everything still reachable
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.screenshot(path=world.shots / "ops-phone.png", full_page=True)
    world.admin.post(f"/hosts/{host['id']}/uncordon")
    context.close()


def _open_draft(world: World, workspace: uuid.UUID) -> None:
    """The current period's draft invoice, as the leader's invoice job (every minute) opens it."""
    now = dt.datetime.now(dt.UTC)
    start = period_start(now, "month")
    engine = make_engine(world.stack.database_url, pool_size=1, application_name="console-test")
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO invoices (workspace_id, period_start, period_end, currency)"
                    " VALUES (:w, :s, :e, 'USD') ON CONFLICT DO NOTHING"
                ),
                {"w": workspace, "s": start, "e": next_period_start(start, "month")},
            )
    finally:
        engine.dispose()


def test_billing_shows_usage_the_limit_and_invoices_with_a_csv(browser: Browser, world: World) -> None:
    lab = next(w for w in world.admin.get("/workspaces").json()["items"] if w["name"] == "lab")
    assert (
        world.admin.put(f"/workspaces/{lab['id']}/settings", json={"spending_limit": "100"}).status_code
        == 200
    )
    spec = {
        "name": "metered",
        "workspace": "lab",
        "image": IMAGE,
        "resources": {"gpus": 1, "cpu": 1, "memory": "1Gi"},
    }
    metered = world.admin.post("/environments/apply", json=spec).json()["environment"]["id"]
    poll_until(
        lambda: world.admin.get(f"/environments/{metered}").json()["phase"] == "running",
        timeout_s=LIVE_S / 1000,
        what="the metered environment to run",
    )
    _open_draft(world, uuid.UUID(lab["id"]))
    context = _context(browser, world, accept_downloads=True)
    page = context.new_page()
    _sign_in(page, DEV_ADMIN_EMAIL, world.admin_password)
    page.get_by_role("link", name="Billing").click()
    page.get_by_label("Workspace").select_option("lab")
    expect(page.locator("#usage-total")).to_contain_text("USD")
    expect(page.locator("#budget")).to_contain_text("of 100.00 USD used")
    draft = page.get_by_role("row").filter(has_text="draft")
    page.screenshot(path=world.shots / "billing.png", full_page=True)
    with page.expect_download() as download:
        draft.get_by_role("link", name="CSV").click()
    assert Path(download.value.path()).read_text().startswith("description,resource,gpu_model")
    draft.get_by_role("link").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Invoice")
    page.screenshot(path=world.shots / "invoice.png", full_page=True)
    context.close()


def test_writes_need_the_csrf_token_and_sign_out_ends_the_session(browser: Browser, world: World) -> None:
    spec = {
        "name": "guarded",
        "workspace": "lab",
        "image": IMAGE,
        "resources": {"gpus": 0, "cpu": 1, "memory": "1Gi"},
    }
    target = world.admin.post("/environments/apply", json=spec).json()["environment"]["id"]
    context = _context(browser, world)
    page = context.new_page()
    _sign_in(page, DEV_ADMIN_EMAIL, world.admin_password)
    cookie = next(c for c in context.cookies() if c["name"] == "remotegpu_session")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/ui"
    assert page.evaluate("document.cookie") == ""  # no script can read the session
    assert page.evaluate("window.localStorage.length") == 0

    refused = page.request.post(f"/ui/environments/{target}/stop", form={"note": "no token"}, max_redirects=0)
    assert refused.status == 403, refused.text()
    forged = page.request.post(f"/ui/environments/{target}/stop", form={"_csrf": "0" * 64}, max_redirects=0)
    assert forged.status == 403
    assert world.admin.get(f"/environments/{target}").json()["desired_state"] == "running"

    page.goto(f"/ui/environments/{target}")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/login"))
    assert not [c for c in context.cookies() if c["name"] == "remotegpu_session"]
    page.goto("/ui/environments")
    expect(page).to_have_url(re.compile(r"/ui/login"))
    context.close()


def test_pages_answer_without_a_browser_too(world: World) -> None:
    """No session: pages send to the sign-in form, live streams end, the assets are served from the
    package (no CDN)."""
    with httpx.Client(base_url=world.url, timeout=10) as plain:
        answer = plain.get("/ui/environments")
        assert answer.status_code in (302, 303)
        assert answer.headers["location"].startswith("/ui/login")
        assert plain.get("/ui/environments/live", headers={"Accept": "text/event-stream"}).status_code == 204
        script = plain.get("/ui/static/console.js")
        assert script.status_code == 200
        assert "EventSource" in script.text
        login = plain.get("/ui/login").text
        assert "http://" not in login
        assert "https://" not in login
