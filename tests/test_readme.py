"""The README's published spec schema is the one the code generates, so the documentation cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

from remotegpu.core.specs import spec_json_schema

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_json_schema_matches_the_structs() -> None:
    text = README.read_text()
    start = text.index("```json\n", text.index("JSON Schema (generated")) + len("```json\n")
    published = json.loads(text[start : text.index("```", start)])
    assert published == spec_json_schema(), "regenerate the README's schema from core/specs.py"


def test_readme_authorization_says_workspace_names_are_global() -> None:
    text = README.read_text()
    section = text[text.index("- **What they may do**") : text.index("- **Errors**")]
    flat = " ".join(section.split())
    assert "you are not in answers **404**" in flat
    assert "names are global" in flat
    assert "`POST /workspaces` answers **409**" in flat
