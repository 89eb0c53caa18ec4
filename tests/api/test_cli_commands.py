"""The `remotegpu` CLI against a running API: apply, dry-run diffs, get, describe, admin commands,
sign-in, and one-line errors with a non-zero exit status. Most tests run the CLI in this process (an
executable start costs a second or more); the real executable shows the errors as `main` prints them."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner, Result

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.ops.cli.app import app
from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.api.conftest import PASSWORD, Caller
from remotegpu.tests.ops.test_cli import EXAMPLES, EXECUTABLE, _env

InProcess = Callable[..., Result]


@pytest.fixture
def invoke(api_url: str, tmp_path: Path) -> InProcess:
    """The CLI run in this process (fast), with its own config folder and no REMOTEGPU_* of ours;
    `token` signs it in, `server` points it at the API (default: the test API)."""

    def run(
        *args: str, token: str | None = None, server: str | None = api_url, stdin: str | None = None
    ) -> Result:
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("REMOTEGPU_")}
        env |= {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "COLUMNS": "200"}
        env |= {"REMOTEGPU_SERVER_URL": server, "REMOTEGPU_TOKEN": token}
        return CliRunner().invoke(app, list(args), env=env, input=stdin)

    return run


def _refused(result: Result) -> str:
    """The one-line message of an expected failure (what `main` prints after `error: `)."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, RemoteGPUError), result.exception
    message = str(result.exception)
    assert "\n" not in message
    return message


def _token(caller: Caller) -> str:
    return str(caller.post("/auth/tokens", json={"name": "cli-test"}).json()["token"])


@pytest.fixture
def signed_in(invoke: InProcess) -> Callable[[Caller], InProcess]:
    """The in-process CLI signed in (by API token) as a given caller."""
    return lambda caller: functools.partial(invoke, token=_token(caller))


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def executable(api_url: str, tmp_path: Path) -> Callable[[Caller], Run]:
    """A runner of the real executable signed in (by API token) as a given caller."""

    def as_caller(caller: Caller) -> Run:
        token = caller.post("/auth/tokens", json={"name": "cli-test"}).json()["token"]

        def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            env = _env(
                REMOTEGPU_SERVER_URL=api_url, REMOTEGPU_TOKEN=token, XDG_CONFIG_HOME=str(tmp_path / "xdg")
            )
            return subprocess.run(
                [EXECUTABLE, *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                input=stdin,
                check=False,
            )

        return run

    return as_caller


def test_apply_a_folder_then_a_dry_run_shows_the_diff(
    signed_in: Callable[[Caller], InProcess],
    new_user: Callable[[str], Caller],
    reconciler: Reconciler,
    tmp_path: Path,
) -> None:
    alice = new_user("alice")
    run = signed_in(alice)
    assert run("workspaces", "create", "research").exit_code == 0
    applied = run("apply", "-f", str(EXAMPLES))
    assert applied.exit_code == 0, applied.output
    assert sorted(applied.stdout.split("\n")[:-1]) == [
        "environment/llm-finetune created",
        "environment/notebook created",
        "environment/prep created",
    ]
    again = run("apply", "-f", str(EXAMPLES / "pytorch-notebook.yaml"))
    assert again.stdout.strip() == "environment/notebook unchanged"

    changed = yaml.safe_load((EXAMPLES / "pytorch-notebook.yaml").read_text())
    changed["resources"]["gpus"]["count"] = 2
    edited = tmp_path / "notebook.yaml"
    edited.write_text(yaml.safe_dump(changed))
    preview = run("apply", "-f", str(edited), "--dry-run")
    assert "environment/notebook updated (dry run)" in preview.stdout
    assert "-    count: 1" in preview.stdout
    assert "+    count: 2" in preview.stdout
    stored = json.loads(run("get", "envs", "-o", "json").stdout)
    assert {e["name"]: e["generation"] for e in stored}["notebook"] == 1, "a dry run changes nothing"

    reconciler.run_until_idle()
    described = run("describe", "env", "notebook")
    assert "Phase:       running" in described.stdout
    assert "ssh -p" in described.stdout
    as_yaml = yaml.safe_load(run("get", "envs", "-o", "yaml").stdout)
    assert {e["name"] for e in as_yaml} == {"notebook", "llm-finetune", "prep"}


def test_errors_are_one_line_and_exit_non_zero(
    executable: Callable[[Caller], Run], new_user: Callable[[str], Caller], tmp_path: Path
) -> None:
    run = executable(new_user("alice"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: environment\nname: x\nimage: y\nresources: {gpus: 1, memroy: 1Gi}\n")
    for args, message in [
        (("apply", "-f", str(bad), "-w", "research"), "bad.yaml: $.resources.memroy: unknown field `memroy`"),
        (("apply", "-f", str(EXAMPLES / "pytorch-notebook.yaml")), "no workspace"),
        (("stop", "ghost", "-w", "research"), "not found"),
        (("get", "hosts"), "this needs a platform administrator [HTTP 403]"),
    ]:
        result = run(*args)
        assert result.returncode == 1, (args, result.stdout)
        assert result.stderr.count("\n") == 1, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr


def test_unreachable_api_is_a_clear_error(invoke: InProcess) -> None:
    refused = _refused(invoke("get", "envs", server="http://127.0.0.1:9", token="rg_unused"))
    assert refused.startswith("cannot reach the API at http://127.0.0.1:9")


class _NotTheApi(http.server.BaseHTTPRequestHandler):
    """Some other HTTP server: a Kubernetes-like JSON 404 for environments, a plain-text one for images."""

    def do_GET(self) -> None:
        as_json = self.path.startswith("/api/v1/environments")
        body = b'{"kind": "Status", "code": 404}' if as_json else b"404 page not found"
        self.send_response(404)
        self.send_header("Content-Type", "application/json" if as_json else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def not_the_api() -> Iterator[str]:
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotTheApi) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


def test_a_server_that_is_not_the_api_is_one_useful_line(invoke: InProcess, not_the_api: str) -> None:
    for command, path in (("envs", "environments"), ("images", "images")):
        said = _refused(invoke("get", command, server=not_the_api, token="rg_unused"))
        assert said == (
            f"{not_the_api}/api/v1/{path} answered 404 Not Found:"
            " is REMOTEGPU_SERVER_URL / --server a RemoteGPU API?"
        )


def test_admin_commands(
    signed_in: Callable[[Caller], InProcess], admin: Caller, reconciler: Reconciler
) -> None:
    run = signed_in(admin)
    assert run("workspaces", "create", "ops-team").exit_code == 0
    quota = run("quota", "set", "--gpus", "4", "--gpu-model", "H100=2", "--memory", "256Gi", "-o", "json")
    assert quota.exit_code == 0, quota.output
    assert json.loads(quota.stdout)["max_gpus_by_model"] == {"H100": 2}
    assert "node-0" in run("get", "hosts").stdout
    assert run("hosts", "cordon", "node-0", "--reason", "fans").stdout.strip() == "host/node-0 cordoned"
    hosts = {h["name"]: h for h in json.loads(run("get", "hosts", "-o", "json").stdout)}
    assert (hosts["node-0"]["cordoned"], hosts["node-0"]["cordon_reason"]) == (True, "fans")
    assert "drained" in run("hosts", "drain", "node-1").stdout
    reconciler.run_until_idle()
    status = run("ops", "status")
    assert "api-test" in status.stdout
    assert "queue depth" in status.stdout
    assert run("billing", "invoices").exit_code == 0
    assert len(json.loads(run("get", "gpus", "-o", "json").stdout)) == 16


def test_register_remembers_its_server_so_the_suggested_login_works(
    invoke: InProcess, anonymous: httpx.Client, api_url: str
) -> None:
    registered = invoke(
        "register",
        "--server",
        api_url,
        "--email",
        "new@example.org",
        "--username",
        "newbie",
        "--password-stdin",
        server=None,
        stdin=f"{PASSWORD}\n",
    )
    assert registered.exit_code == 0, registered.output
    suggested = registered.output.split("Next: ")[1].split()
    assert suggested == ["remotegpu", "login", "--email", "new@example.org"]
    signed_in = invoke(*suggested[1:], "--password-stdin", server=None, stdin=f"{PASSWORD}\n")
    assert signed_in.exit_code == 0, signed_in.output
    assert f"Signed in to {api_url}" in signed_in.output


def _save_profile(tmp_path: Path, server: str, token: str) -> None:
    """What an earlier `remotegpu login` leaves in the CLI's config folder."""
    profile = tmp_path / "xdg" / "remotegpu" / "cli.json"
    profile.parent.mkdir(parents=True, exist_ok=True)
    profile.write_text(json.dumps({"server": server, "token": token, "workspace": None}))


def test_a_wrong_password_does_not_tell_you_to_run_login(
    invoke: InProcess, new_user: Callable[[str], Caller], api_url: str, tmp_path: Path
) -> None:
    alice = new_user("alice")
    _save_profile(tmp_path, api_url, _token(alice))  # even with a token saved by an earlier login
    refused = _refused(invoke("login", "--email", alice.email, "--password-stdin", stdin="wrong password\n"))
    assert refused == "e-mail or password is wrong, or the account is disabled [HTTP 401]"


def test_a_refused_saved_token_tells_you_to_sign_in_again(
    invoke: InProcess, api_url: str, tmp_path: Path
) -> None:
    _save_profile(tmp_path, api_url, "rg_revoked")
    assert _refused(invoke("get", "envs")).endswith("(run `remotegpu login`) [HTTP 401]")
    configured = _refused(invoke("get", "envs", token="rg_revoked"))
    assert configured.endswith("(REMOTEGPU_TOKEN was refused) [HTTP 401]"), "login would not replace it"


def test_not_signed_in_commands_say_sign_in_first(invoke: InProcess, api_url: str) -> None:
    for args in (("apply", "-f", str(EXAMPLES / "pytorch-notebook.yaml")), ("get", "envs")):
        assert _refused(invoke(*args)) == f"not signed in to {api_url}: sign in first (`remotegpu login`)"


def test_access_to_an_environment_that_is_not_running_exits_1(
    invoke: InProcess, new_user: Callable[[str], Caller]
) -> None:
    token = _token(new_user("alice"))
    assert invoke("workspaces", "create", "research", token=token).exit_code == 0
    assert invoke("apply", "-f", str(EXAMPLES / "pytorch-notebook.yaml"), token=token).exit_code == 0
    refused = _refused(invoke("access", "notebook", token=token))
    assert refused.startswith("environment 'notebook' is not running (phase ")


def test_watch_ends_with_the_reason_when_no_host_has_the_gpu_model(
    invoke: InProcess, new_user: Callable[[str], Caller], reconciler: Reconciler, tmp_path: Path
) -> None:
    token = _token(new_user("alice"))
    assert invoke("workspaces", "create", "research", token=token).exit_code == 0
    spec = tmp_path / "a100.yaml"
    spec.write_text(
        "kind: environment\nname: train\nimage: docker.io/library/ubuntu:24.04\nresources: {gpus: {count: 1, model: A100}}\n"
    )
    assert invoke("apply", "-f", str(spec), token=token).exit_code == 0
    reconciler.run_until_idle()
    refused = _refused(invoke("watch", "train", "--timeout", "30", "--interval", "0.1", token=token))
    assert refused == (
        "cannot be placed: train (no host can ever fit 1×A100) (see `remotegpu describe env NAME`)"
    )


def test_watch_of_an_unknown_environment_is_an_error_as_describe_says(
    invoke: InProcess, new_user: Callable[[str], Caller]
) -> None:
    said = _refused(invoke("watch", "nope", "--timeout", "5", token=_token(new_user("alice"))))
    assert said == "environment 'nope' not found (see `remotegpu get envs`)", "as describe, logs and access"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfekind: environment\n", "bad.yaml: not a text file (byte 0 is not UTF-8)"),
        (b"", "bad.yaml: no environment specs"),
        (b"# only a comment\n---\n", "bad.yaml: no environment specs"),
        (
            b"kind: pod\nname: x\nimage: y\n",
            "bad.yaml: $.kind: must be 'environment', not 'pod'",
        ),
    ],
)
def test_unusable_spec_files_are_one_line_errors(
    invoke: InProcess, tmp_path: Path, content: bytes, message: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content)
    assert _refused(invoke("apply", "-f", str(bad), token="rg_unused")) == f"{bad.parent}/{message}"


def test_the_api_and_the_cli_say_the_same_about_a_bad_spec(
    invoke: InProcess, new_user: Callable[[str], Caller], tmp_path: Path
) -> None:
    alice = new_user("alice")
    assert alice.post("/workspaces", json={"name": "research"}).status_code == 201
    document = {"kind": "environment", "name": "x", "image": "y", "resources": {"gpus": -1}}
    refused = alice.post("/environments/apply", json=document, params={"workspace": "research"})
    assert refused.status_code == 422
    assert refused.json()["detail"] == "$.resources.gpus: must be between 0 and 64"
    assert refused.json()["errors"][0]["message"] == "must be between 0 and 64"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(document))
    said = _refused(invoke("apply", "-f", str(bad), "-w", "research", token=_token(alice)))
    assert said == f"{bad}: $.resources.gpus: must be between 0 and 64"
    too_many = alice.get("/environments", params={"limit": 100000})
    assert too_many.status_code == 422
    assert re.fullmatch(r"limit: must be between 1 and \d+", too_many.json()["detail"]), (
        "query parameters too"
    )


def test_hosts_set_address_sets_and_clears_the_address_get_hosts_shows(
    signed_in: Callable[[Caller], InProcess], admin: Caller, reconciler: Reconciler
) -> None:
    run = signed_in(admin)
    assert "node-0 (node name)" in run("get", "hosts").stdout, "no node address: the name, flagged"
    set_ = run("hosts", "set-address", "node-0", "gpu0.lab.example.org")
    assert set_.stdout.strip() == "host/node-0 address set to gpu0.lab.example.org", set_.output
    listed = run("get", "hosts").stdout
    assert "gpu0.lab.example.org" in listed
    hosts = {h["name"]: h for h in json.loads(run("get", "hosts", "-o", "json").stdout)}
    assert (hosts["node-0"]["address"], hosts["node-0"]["public_address"]) == ("gpu0.lab.example.org",) * 2
    refused = run("hosts", "set-address", "node-0", "gpu_0!")
    assert refused.exit_code != 0
    assert "$.public_address: 'gpu_0!' is neither a hostname nor an IP address" in str(refused.exception)
    neither = run("hosts", "set-address", "node-0")
    assert "give either an ADDRESS or --clear" in str(neither.exception)
    cleared = run("hosts", "set-address", "node-0", "--clear")
    assert cleared.stdout.strip() == "host/node-0 address override cleared; address node-0", cleared.output


def test_names_comments_and_addresses_print_as_written_never_read_as_markup(
    signed_in: Callable[[Caller], InProcess], new_user: Callable[[str], Caller], tmp_path: Path
) -> None:
    """What the server holds is printed as written: a `[/]` a user typed neither crashes the CLI nor
    vanishes, and a bracketed IPv6 host stays in a URL; long cells fold instead of losing their end."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    alice = new_user("alice")
    run = signed_in(alice)
    created = alice.post("/workspaces", json={"name": "research", "display_name": "Research [/] lab"})
    assert created.status_code == 201, created.text
    listed = run("get", "workspaces")
    assert listed.exit_code == 0, listed.output
    assert "Research [/] lab" in listed.stdout

    public = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    key_file = tmp_path / "marked.pub"
    key_file.write_text(public.decode() + " oops[/][bold]x[/bold]\n")
    added = run("ssh-keys", "add", str(key_file))
    assert added.exit_code == 0, added.output
    assert "oops[/][bold]x[/bold]" in added.stdout
    keys = run("ssh-keys", "list")
    assert keys.exit_code == 0, keys.output
    fingerprint = json.loads(run("ssh-keys", "list", "-o", "json").stdout)[0]["fingerprint"]
    assert fingerprint in re.sub(r"\s+", "", keys.stdout), "the whole fingerprint, folded, not cut off"


def test_passwd_and_an_admin_reset_from_the_cli(
    invoke: InProcess, admin: Caller, new_user: Callable[[str], Caller], anonymous: httpx.Client
) -> None:
    gina = new_user("gina")
    token = _token(gina)
    weak = invoke("passwd", "--password-stdin", token=token, stdin=f"{PASSWORD}\nqwertyuiop\n")
    assert "most common passwords" in _refused(weak)
    changed = invoke("passwd", "--password-stdin", token=token, stdin=f"{PASSWORD}\nquiet purple mountains\n")
    assert changed.exit_code == 0, changed.output
    assert "signed out" in changed.output
    assert invoke("get", "workspaces", token=token).exit_code == 0, "this machine's token stays"

    issued = invoke("users", "reset-password", "gina@example.org", token=_token(admin))
    assert issued.exit_code == 0, issued.output
    reset_token = next(word for word in issued.output.split() if word.startswith("rgpr_"))
    tokenless = invoke("reset-password", "--password-stdin", stdin="seven silver foxes\n")
    assert "--token: needed with --password-stdin" in _refused(tokenless)
    redeemed = invoke(
        "reset-password", "--token", reset_token, "--password-stdin", stdin="seven silver foxes\n"
    )
    assert redeemed.exit_code == 0, redeemed.output
    assert invoke("get", "workspaces", token=token).exit_code != 0, "a reset ends every token"
    signed = anonymous.post(
        "/auth/login", json={"email": "gina@example.org", "password": "seven silver foxes"}
    )
    assert signed.status_code == 200
    unknown = invoke("users", "reset-password", "nobody", token=_token(admin))
    assert "no user 'nobody'" in _refused(unknown)
