"""One import namespace: every top-level folder installs as `remotegpu.<folder>`, in a wheel and editable."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import remotegpu.core

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("core", "policies", "reconciler", "api", "ops", "migrations", "tests")


def test_editable_install_maps_the_namespace_onto_the_top_level_folders() -> None:
    assert Path(remotegpu.core.__file__).resolve() == ROOT / "core" / "__init__.py"


def test_wheel_holds_only_the_remotegpu_namespace_and_imports_from_it(tmp_path: Path) -> None:
    # Build from a copy of the source files only: a stale build/ folder would hide a missing package.
    source = tmp_path / "source"
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for relative in listed:
        if (ROOT / relative).is_file():
            (source / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, source / relative)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    (wheel,) = tmp_path.glob("remotegpu-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    (metadata,) = tops - {"remotegpu"}
    assert metadata.endswith(".dist-info"), f"unexpected top-level entry {metadata!r} in the wheel"
    packages = {
        f"remotegpu/{path.parent.relative_to(ROOT).as_posix()}/__init__.py"
        for folder in FOLDERS
        for path in (ROOT / folder).rglob("__init__.py")
        if ".venv" not in path.parts and "build" not in path.parts
    }
    missing = sorted(packages - set(names))
    assert missing == [], f"packages missing from the wheel (add them to pyproject.toml): {missing}"
    assert "remotegpu/migrations/script.py.mako" in names
    assert any(name.startswith("remotegpu/migrations/versions/0001") for name in names)

    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    probe = (
        "import remotegpu.core.models, remotegpu.ops.cli.app, remotegpu.ops.devstack, remotegpu.ops.bench.reconcile,"
        " remotegpu.migrations, pathlib;"
        "print(pathlib.Path(remotegpu.core.models.__file__).resolve())"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(unpacked), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        check=True,
    )
    assert result.stdout.strip().startswith(str(unpacked.resolve()))
