"""The console's form and YAML readers: one spec struct either way, errors keyed by the input that holds
the field, the dry run's diff, and CSRF tokens bound to one session."""

from __future__ import annotations

from remotegpu.api.console.forms import field_key, spec_diff, spec_from_form, spec_from_yaml, spec_yaml
from remotegpu.api.console.session import csrf_token, session_of

FORM = {
    "name": "box",
    "image": "nvcr.io/nvidia/pytorch:24.05-py3",
    "command": "python -c 'print(1)'",
    "resources.gpus.count": "2",
    "resources.gpus.model": "H100",
    "resources.cpu": "8",
    "resources.memory": "32Gi",
    "volumes.0.name": "data",
    "volumes.0.size": "100Gi",
    "volumes.0.mount": "/workspace",
    "policies.max_duration": "24h",
}


def test_the_form_and_its_yaml_make_the_same_spec() -> None:
    from_form = spec_from_form(FORM, ["ssh", "jupyter"], "lab")
    assert from_form.errors == {}
    assert from_form.spec is not None
    assert from_form.spec.command == ["python", "-c", "print(1)"]
    from_yaml = spec_from_yaml(spec_yaml(from_form.spec), None)
    assert from_yaml.spec == from_form.spec


def test_a_bad_value_is_reported_under_its_input() -> None:
    parsed = spec_from_form({**FORM, "resources.gpus.count": "two"}, [], "lab")
    assert parsed.spec is None
    assert list(parsed.errors) == ["resources.gpus.count"]
    parsed = spec_from_form({**FORM, "volumes.0.mount": "workspace"}, [], "lab")
    assert list(parsed.errors) == ["volumes.0.mount"]


def test_yaml_errors_stay_beside_the_text_and_name_the_field() -> None:
    parsed = spec_from_yaml("name: box\nimage: x\nresources: {cpu: 1, memroy: 1Gi}\n", "lab")
    assert parsed.spec is None
    assert "memroy" in parsed.errors["yaml"]
    assert "(line 2, column 1)" in spec_from_yaml("name: [box\n", "lab").errors["yaml"]


def test_field_key_turns_json_paths_into_input_names() -> None:
    assert field_key("$.volumes[0].size") == "volumes.0.size"
    assert field_key("$.resources.gpus.count") == "resources.gpus.count"


def test_the_diff_marks_added_and_removed_lines() -> None:
    lines = spec_diff({"name": "box", "image": "a"}, {"name": "box", "image": "b"})
    assert ("remove", "-image: a") in lines
    assert ("add", "+image: b") in lines
    assert all(kind == "add" for kind, _ in spec_diff(None, {"name": "box"}) if kind != "hunk")


def test_csrf_tokens_belong_to_one_session_and_one_key() -> None:
    assert csrf_token("k" * 32, "session-a") != csrf_token("k" * 32, "session-b")
    assert csrf_token("k" * 32, "session-a") != csrf_token("j" * 32, "session-a")
    assert session_of([(b"cookie", b"other=1; remotegpu_session=abc")]) == "abc"
    assert session_of([(b"cookie", b"other=1")]) is None
