"""The access image's entrypoint (`ops/images/access/entrypoint`), run for real with Debian's OpenSSH.

Images cannot be built here, so the test lays out an access folder as the image's init container leaves
it (`bin/entrypoint`, `bin/sshd`, `bin/ssh-keygen`, `libexec/sftp-server`, `etc/sshd_config.template`,
`keys/authorized_keys`), with Debian's `openssh-server` binaries in place of the static build, starts the
entrypoint on a free high port as the current user, and logs in over loopback with the `ssh` client.
sshd's StrictModes refuses an `authorized_keys` below a world-writable folder such as /tmp, so sshd's
runtime folder is made below /run (root) or the home folder (anyone else), and removed afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from remotegpu.tests.ops.processes import command_env, group_members, started
from remotegpu.tests.polling import poll_until

ACCESS_SOURCE = Path(__file__).resolve().parents[2] / "ops" / "images" / "access"
SSHD = Path("/usr/sbin/sshd")
SSH = Path("/usr/bin/ssh")
SSH_KEYGEN = Path("/usr/bin/ssh-keygen")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
SYSTEM_PATH = "/usr/local/sbin:/usr/sbin:/sbin:/bin:/usr/bin"
TOKEN = "jupyter-token-that-must-never-be-printed-3f9a"
USER = pwd.getpwuid(os.getuid()).pw_name


def _require_openssh() -> None:
    assert SSHD.exists(), (
        f"{SSHD} is missing: install Debian's OpenSSH server (apt-get install openssh-server)"
    )
    for client in (SSH, SSH_KEYGEN):
        assert client.exists(), (
            f"{client} is missing: install Debian's OpenSSH client (apt-get install openssh-client)"
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path) -> Path:
    subprocess.run(
        [str(SSH_KEYGEN), "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True
    )
    return path


@pytest.fixture
def access_dir(tmp_path: Path) -> Path:
    """An access folder as the init container copies it, with Debian's binaries for the static ones."""
    _require_openssh()
    access = tmp_path / "access"
    for sub in ("bin", "libexec", "etc", "keys"):
        (access / sub).mkdir(parents=True)
    shutil.copy2(ACCESS_SOURCE / "entrypoint", access / "bin" / "entrypoint")
    shutil.copy2(ACCESS_SOURCE / "sshd_config.template", access / "etc" / "sshd_config.template")
    (access / "bin" / "sshd").symlink_to(SSHD)
    (access / "bin" / "ssh-keygen").symlink_to(SSH_KEYGEN)
    if SFTP_SERVER.exists():
        (access / "libexec" / "sftp-server").symlink_to(SFTP_SERVER)
    return access


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """sshd's runtime folder where StrictModes accepts it: every folder above owned by root or the user."""
    base = "/run" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_dir
    path = Path(tempfile.mkdtemp(prefix="remotegpu-access-test-", dir=base))
    try:
        yield path / "sshd"
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    """Two fresh ed25519 keys: the first is authorised, the second is not."""
    return _keygen(tmp_path / "allowed_key"), _keygen(tmp_path / "stranger_key")


def _env(access: Path, run: Path, state: Path, port: int, **extra: str) -> dict[str, str]:
    return command_env(
        PATH=SYSTEM_PATH,
        HOME=pwd.getpwuid(os.getuid()).pw_dir,
        REMOTEGPU_ACCESS_DIR=str(access),
        REMOTEGPU_RUN_DIR=str(run),
        REMOTEGPU_STATE_DIR=str(state),
        REMOTEGPU_SSH_PORT=str(port),
        REMOTEGPU_SSH_LISTEN="127.0.0.1",
        **extra,
    )


def _ssh(key: Path, port: int, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(SSH),
            "-F",
            "/dev/null",
            "-i",
            str(key),
            "-p",
            str(port),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            f"{USER}@127.0.0.1",
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_text().split("\0")[:-1]


def test_a_listed_key_logs_in_and_runs_a_command_and_another_key_is_refused(
    access_dir: Path, run_dir: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    allowed, stranger = keys
    (access_dir / "keys" / "authorized_keys").write_text(allowed.with_suffix(".pub").read_text())
    port = _free_port()
    env = _env(access_dir, run_dir, tmp_path / "state", port, REMOTEGPU_KEYS_REFRESH_S="1")
    user_command = ["sh", "-c", "echo user command started; exec sleep 300"]
    with started(["--", *user_command], env, program=str(access_dir / "bin" / "entrypoint")) as (
        process,
        output,
    ):
        assert output.wait_for("user command started", timeout_s=60), output.text()
        poll_until(lambda: process.poll() is None and _listening(port), 30, f"sshd listening on {port}")
        # the user's command replaced the entrypoint (exec): it is the process the pod signals
        assert poll_until(
            lambda: _cmdline(process.pid), 10, "the user's command", until=lambda c: c[0] == "sleep"
        )

        login = _ssh(allowed, port, "echo", "logged in as", "$(id -un)", "in", "$PWD")
        assert login.returncode == 0, f"{login.stderr}\n{output.text()}"
        assert login.stdout.strip() == f"logged in as {USER} in {pwd.getpwuid(os.getuid()).pw_dir}"

        refused = _ssh(stranger, port, "echo", "should not run")
        assert refused.returncode == 255
        assert "should not run" not in refused.stdout
        assert "Permission denied (publickey)" in refused.stderr

        # the Secret's mount changes in place; the entrypoint copies it again, so a removed key stops working
        (access_dir / "keys" / "authorized_keys").write_text(stranger.with_suffix(".pub").read_text())
        poll_until(
            lambda: _ssh(allowed, port, "true").returncode,
            30,
            "the removed key to be refused",
            until=lambda r: r == 255,
        )
        assert _ssh(stranger, port, "echo", "now allowed").stdout.strip() == "now allowed"

        config = (run_dir / "sshd_config").read_text()
        assert "PasswordAuthentication no" in config
        assert "PermitRootLogin prohibit-password" in config
        assert oct((run_dir / "ssh_host_ed25519_key").stat().st_mode & 0o777) == "0o600"
        assert not (tmp_path / "state" / "ssh-unavailable").exists()
    # sshd and the key refresher stayed in the entrypoint's process group, so the test's cleanup ended them
    assert not group_members(process.pid)


def test_jupyter_missing_from_the_image_is_marked_and_the_command_still_runs(
    access_dir: Path, run_dir: Path, tmp_path: Path
) -> None:
    assert shutil.which("jupyter", path=SYSTEM_PATH) is None, "this test needs a PATH without jupyter"
    state = tmp_path / "state"
    env = _env(
        access_dir,
        run_dir,
        state,
        _free_port(),
        REMOTEGPU_SSH="0",
        REMOTEGPU_JUPYTER_PORT="8888",
        JUPYTER_TOKEN=TOKEN,
    )
    with started(
        ["--", "sh", "-c", "echo user command started; exec sleep 300"],
        env,
        program=str(access_dir / "bin" / "entrypoint"),
    ) as (process, output):
        assert output.wait_for("user command started", timeout_s=60), output.text()
        marker = (state / "jupyter-unavailable").read_text()
        assert marker.count("\n") == 1
        assert "no jupyter on PATH" in marker
        assert "drop jupyter" in marker
        assert process.poll() is None
    assert TOKEN not in output.text()


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_jupyter_in_the_image_starts_with_the_token_from_the_environment_only(
    app: str, access_dir: Path, run_dir: Path, tmp_path: Path
) -> None:
    """`jupyter lab` where the image has it, else the classic `jupyter notebook`."""
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    seen = tmp_path / "jupyter-seen"
    # a stand-in for jupyter that records how it was started (the token's presence, not its value)
    (fake_bin / "jupyter").write_text(
        "#!/bin/sh\n"
        f'{{ echo "args: $*"; [ "$JUPYTER_TOKEN" = {TOKEN} ] && echo token-in-env; }} > {seen}.tmp\n'
        f"mv {seen}.tmp {seen}\nexec sleep 300\n"
    )
    (fake_bin / f"jupyter-{app}").write_text("#!/bin/sh\nexit 1\n")
    for tool in fake_bin.iterdir():
        tool.chmod(0o755)
    state = tmp_path / "state"
    env = _env(
        access_dir,
        run_dir,
        state,
        _free_port(),
        REMOTEGPU_SSH="0",
        REMOTEGPU_JUPYTER_PORT="18888",
        JUPYTER_TOKEN=TOKEN,
    )
    env["PATH"] = f"{fake_bin}:{SYSTEM_PATH}"
    with started(["--", "sleep", "300"], env, program=str(access_dir / "bin" / "entrypoint")) as (
        process,
        output,
    ):
        lines = poll_until(
            lambda: seen.read_text().splitlines() if seen.exists() else [], 30, "jupyter to start"
        )
        args = lines[0].split()[1:]
        assert args[:4] == [app, "--ip=0.0.0.0", "--port=18888", "--no-browser"]
        assert "token-in-env" in lines
        assert not any(TOKEN in arg for arg in args)
        assert not (state / "jupyter-unavailable").exists()
        assert process.poll() is None
    assert TOKEN not in output.text()
