"""How a fake Jumpserver reads request fields and writes errors, as Django REST framework and Jumpserver's
serializer fields do (jumpserver/jumpserver v3.10.23: `apps/common/serializers/fields.py` for
`ObjectRelatedField`, `LabeledChoiceField` and `BitChoicesField`, `apps/perms/const.py` for the action bits,
`apps/common/drf/exc_handlers.py` for `{"detail", "code"}` bodies, `apps/jumpserver/settings/libs.py` for
the `%Y/%m/%d %H:%M:%S %z` date format, `apps/accounts/utils.py` for the SSH key check)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Collection
from typing import Any

from cryptography.hazmat.primitives import serialization

REQUIRED = "This field is required."
BLANK = "This field may not be blank."
UNIQUE = "This field must be unique."
ACTIONS = {
    "connect": (1, "Connect (All protocols)"),
    "upload": (2, "Upload (RDP, SFTP)"),
    "download": (4, "Download (RDP, SFTP)"),
    "copy": (8, "Copy (RDP, VNC)"),
    "paste": (16, "Paste (RDP, VNC)"),
    "delete": (32, "Delete (SFTP)"),
    "share": (64, "Share (SSH)"),
}


class ApiError(Exception):
    """An error answer: the status and the JSON body Jumpserver sends with it."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body

    @classmethod
    def not_found(cls, model: str) -> ApiError:
        """`get_object_or_404`'s Http404, as Jumpserver's exception handler rewrites it."""
        return cls(404, {"detail": f"{model} object does not exist.", "code": "object_does_not_exist"})

    @classmethod
    def raise_if(cls, errors: dict[str, Any]) -> None:
        if errors:
            raise cls(400, errors)


def text(
    data: dict[str, Any],
    key: str,
    errors: dict[str, Any],
    *,
    required: bool = False,
    blank: bool = False,
    max_length: int = 128,
    trim: bool = True,
) -> str | None:
    """A `CharField`: None when absent (and not required); its error recorded under `key` otherwise."""
    if key not in data:
        if required:
            errors[key] = [REQUIRED]
        return None
    value = data[key]
    if value is None:
        if not blank:
            errors[key] = ["This field may not be null."]
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        errors[key] = ["Not a valid string."]
        return None
    result = str(value).strip() if trim else str(value)
    if not result and not blank:
        errors[key] = [BLANK]
    elif len(result) > max_length:
        errors[key] = [f"Ensure this field has no more than {max_length} characters."]
    return result


def boolean(data: dict[str, Any], key: str, errors: dict[str, Any], *, default: bool) -> bool:
    value = data.get(key, default)
    if value in (True, "true", "True", 1, "1"):
        return True
    if value in (False, "false", "False", 0, "0"):
        return False
    errors[key] = ["Must be a valid boolean."]
    return default


def choice(
    data: dict[str, Any], key: str, choices: Collection[str], errors: dict[str, Any], *, default: str
) -> str:
    """A `LabeledChoiceField`: the value, or `{value, label}` as Jumpserver writes it back."""
    value = data.get(key, default)
    if isinstance(value, dict):
        value = value.get("value")
    if value not in choices:
        errors[key] = [f'"{value}" is not a valid choice.']
        return default
    return str(value)


def related_ids(
    data: dict[str, Any], key: str, errors: dict[str, Any], *, known: Collection[str] | None = None
) -> list[str]:
    """A many `ObjectRelatedField`: ids or `{id}` objects in; unknown ones refused (when `known` is given)."""
    value = data.get(key) or []
    if not isinstance(value, list):
        errors[key] = [f'Expected a list of items but got type "{type(value).__name__}".']
        return []
    ids = [str(v.get("id") or v.get("pk")) if isinstance(v, dict) else str(v) for v in value]
    unknown = [i for i in ids if known is not None and i not in known]
    if unknown:
        errors[key] = [f'Invalid pk "{unknown[0]}" - object does not exist.']
    return list(dict.fromkeys(ids))


def string_list(data: dict[str, Any], key: str, errors: dict[str, Any]) -> list[str] | None:
    if key not in data:
        return None
    value = data[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors[key] = ['Expected a list of items but got type "str".']
        return None
    return list(value)


def matches(query: dict[str, str], key: str, value: object) -> bool:
    """An exact django-filter match; a parameter the filter set does not declare is ignored, as there."""
    wanted = query.get(key)
    if wanted is None or wanted == "":
        return True
    if isinstance(value, bool):
        return wanted.lower() in ("true", "1") if value else wanted.lower() in ("false", "0")
    return wanted == str(value)


def jms_time(moment: dt.datetime) -> str:
    return moment.strftime("%Y/%m/%d %H:%M:%S %z")


def actions_of(names: list[Any]) -> int:
    """The action bits of `names` (`"all"`: every one); KeyError naming an unknown action."""
    if "all" in names:
        return sum(bit for bit, _ in ACTIONS.values())
    value = 0
    for name in names:
        if name not in ACTIONS:
            raise KeyError(name)
        value |= ACTIONS[name][0]
    return value


def actions_in(data: dict[str, Any], errors: dict[str, Any]) -> int | None:
    """`actions` as the bit field it is stored as; None when absent."""
    if "actions" not in data:
        return None
    value = data["actions"]
    if not isinstance(value, list):
        errors["actions"] = ["Invalid data type, should be list"]
        return None
    try:
        return actions_of([v.get("value") if isinstance(v, dict) else v for v in value])
    except KeyError as unknown:
        errors["actions"] = [f"Invalid choice: {unknown.args[0]}"]
        return None


def actions_json(value: int) -> list[dict[str, str]]:
    return [{"value": name, "label": label} for name, (bit, label) in ACTIONS.items() if value & bit == bit]


def check_secret(secret_type: str, secret: str) -> None:
    """An SSH key secret must load as a private key (`validate_ssh_key`); the refusal never quotes it."""
    if secret_type != "ssh_key" or not secret:  # noqa: S105 (a secret type, not a secret)
        return
    for load in (serialization.load_ssh_private_key, serialization.load_pem_private_key):
        try:
            load(secret.encode(), password=None)
        except (ValueError, TypeError):
            continue
        return
    # Raised from the serializer's create(), outside field validation: a bare list, no field name.
    raise ApiError(400, ["private key invalid or passphrase error"])


def new_token() -> str:
    """36 characters, as `common.utils.random_string(36)` makes a bearer token."""
    return secrets.token_hex(18)
