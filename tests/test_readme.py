"""The README's published spec schema is the one the code generates, so the documentation cannot rot."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from remotegpu.core.environments.derived import port_requests
from remotegpu.core.environments.spec import parse_spec, spec_json_schema
from remotegpu.core.environments.states import PortPurpose
from remotegpu.core.models.inventory import Host
from remotegpu.policies.host_ports import choose_host_ports

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_json_schema_matches_the_structs() -> None:
    text = README.read_text()
    start = text.index("```json\n", text.index("JSON Schema (generated")) + len("```json\n")
    published = json.loads(text[start : text.index("```", start)])
    assert published == spec_json_schema(), "regenerate the README's schema from core/environments/spec.py"


def test_readme_authorization_says_workspace_names_are_global() -> None:
    text = README.read_text()
    section = text[text.index("- **What they may do**") : text.index("- **Errors**")]
    flat = " ".join(section.split())
    assert "you are not in answers **404**" in flat
    assert "names are global" in flat
    assert "`POST /workspaces` answers **409**" in flat


REPOSITORY = README.parent


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}")
    return text[start : text.index("\n## ", start + 1)]


def test_readme_links_and_examples_name_only_files_the_repository_has() -> None:
    prose = re.sub(r"```.*?```", "", README.read_text(), flags=re.DOTALL)  # code is not links
    targets = re.findall(r"\]\(([^)#\s]+)", re.sub(r"`[^`\n]*`", "", prose))
    for target in (t for t in targets if not re.match(r"[a-z]+://", t)):
        resolved = (REPOSITORY / target).resolve()
        assert resolved.is_relative_to(REPOSITORY), f"{target} is outside the repository"
        assert resolved.exists(), f"{target} does not exist"
    for text in [README.read_text(), *(p.read_text() for p in (REPOSITORY / "examples").iterdir())]:
        for document in re.findall(r"[\w./-]+\.md\b", text):
            found = [p for p in REPOSITORY.rglob(Path(document).name) if ".venv" not in p.parts]
            assert found, f"{document} is not in the repository"


def test_readme_use_it_puts_the_cli_on_the_path_and_shows_how_to_choose_the_port() -> None:
    section = _section("Use it")
    commands = section[section.index("```sh") :]
    first_bare = commands.index("\nremotegpu ")
    assert 0 <= commands.find("\n. .venv/bin/activate\n") < first_bare, "activate the venv first"
    assert "remotegpu dev --port 8081" in section


def test_readme_ssh_port_is_the_first_port_a_host_gives() -> None:
    spec = parse_spec(yaml.safe_load((REPOSITORY / "examples" / "pytorch-notebook.yaml").read_text()))
    first = Host.__table__.c.port_range_start.default.arg
    wanted = port_requests(spec)
    host_ports = choose_host_ports([p.protocol for p in wanted], first, first + 99, set())
    assert host_ports is not None
    ssh = next(host for p, host in zip(wanted, host_ports, strict=True) if p.purpose is PortPurpose.SSH)
    shown = re.findall(r"ssh -p (\d+) root@", _section("Use it"))
    assert shown == [str(ssh)]
