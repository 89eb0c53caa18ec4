"""msgspec's raw validation messages become readable ones naming the field, over the real spec struct."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from remotegpu.core.environments.spec import EnvironmentSpec, SpecError, parse_spec, spec_json_schema
from remotegpu.core.platform.validation_messages import PATTERN_MEANINGS, field_and_message

BASE = {"name": "train", "image": "pytorch/pytorch:2.4.0"}


@pytest.mark.parametrize(
    ("change", "raw", "said"),
    [
        (
            {"resources": {"gpus": -1}},
            "Expected `int` >= 0 - at `$.resources.gpus`",
            "$.resources.gpus: must be between 0 and 64",
        ),
        (
            {"resources": {"gpus": {"count": 65}}},
            "Expected `int` <= 64 - at `$.resources.gpus.count`",
            "$.resources.gpus.count: must be between 0 and 64",
        ),
        (
            {"resources": {"gpus": "two"}},
            "Expected `int | object`, got `str` - at `$.resources.gpus`",
            "$.resources.gpus: must be a whole number or a mapping, not a string",
        ),
        (
            {"kind": "pod"},
            "Invalid enum value 'pod' - at `$.kind`",
            "$.kind: must be 'environment', not 'pod'",
        ),
        (
            {"access": ["vnc"]},
            "Invalid enum value 'vnc' - at `$.access[0]`",
            "$.access[0]: must be one of 'jupyter', 'ssh', not 'vnc'",
        ),
        (
            {"ports": [{"container": 0}]},
            "Expected `int` >= 1 - at `$.ports[0].container`",
            "$.ports[0].container: must be between 1 and 65535",
        ),
        (
            {"ports": [{"container": 1.5}]},
            "Expected `int`, got `float` - at `$.ports[0].container`",
            "$.ports[0].container: must be a whole number, not a decimal number",
        ),
        (
            {"ports": [{}]},
            "Object missing required field `container` - at `$.ports[0]`",
            "$.ports[0].container: is required",
        ),
        (
            {"ports": [{"container": 80, "name": "a-very-long-port-name"}]},
            "Expected `str` of length <= 15 - at `$.ports[0].name`",
            "$.ports[0].name: must be at most 15 characters long",
        ),
        (
            {"image": ""},
            "Expected `str` of length >= 1 - at `$.image`",
            "$.image: must be 1 to 512 characters long",
        ),
        (
            {"name": "Bad_Name"},
            "Expected `str` matching regex '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$' - at `$.name`",
            "$.name: must be a lower-case DNS label: a-z, 0-9 and '-', at most 63 characters",
        ),
        (
            {"env": {"1A": "x"}},
            "Expected `str` matching regex '^[A-Za-z_][A-Za-z0-9_]*$' - at `key` in `$.env`",
            "$.env: keys must be a variable name: letters, digits and '_', not starting with a digit",
        ),
        (
            {"volumes": [{"name": "data", "size": "1Gi", "mount": "data"}]},
            "Expected `str` matching regex '^/' - at `$.volumes[0].mount`",
            "$.volumes[0].mount: must be an absolute path (starting with /)",
        ),
        (
            {"resources": {"cpu": []}},
            "Expected `int | float | str`, got `array` - at `$.resources.cpu`",
            "$.resources.cpu: must be a number or a string, not a list",
        ),
        (
            {"policies": {"idle_stop_after": 5}},
            "Expected `str | null`, got `int` - at `$.policies.idle_stop_after`",
            "$.policies.idle_stop_after: must be a string, not a whole number",
        ),
        (
            {"env": {"OK": "x", "BAD": 5}},
            "Expected `str`, got `int` - at `$.env[...]`",
            "$.env.BAD: must be a string, not a whole number",
        ),
        (
            {"command": "python"},
            "Expected `array`, got `str` - at `$.command`",
            "$.command: must be a list, not a string",
        ),
    ],
)
def test_msgspec_messages_are_translated_naming_the_field(
    change: dict[str, Any], raw: str, said: str
) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.convert(BASE | change, EnvironmentSpec, strict=False)
    assert str(caught.value) == raw, "msgspec's wording changed: update the translator"
    with pytest.raises(SpecError) as refused:
        parse_spec(BASE | change)
    assert str(refused.value) == said


def test_without_the_type_the_violated_bound_is_named() -> None:
    assert field_and_message("Expected `int` <= 200") == ("$", "must be at most 200")
    assert field_and_message("Invalid enum value 'x' - at `$.role`") == (
        "$.role",
        "'x' is not one of the allowed values",
    )
    assert field_and_message("Invalid RFC3339 encoded datetime - at `$.at`") == (
        "$.at",
        "Invalid RFC3339 encoded datetime",
    ), "unrecognised messages pass through unchanged"


def test_every_pattern_of_the_spec_has_a_meaning() -> None:
    patterns: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if "pattern" in node:
                patterns.add(node["pattern"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(spec_json_schema())
    assert patterns
    assert patterns <= set(PATTERN_MEANINGS)
