"""Kubernetes-style quantities and Go-style durations, as users write them in specs."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_bytes(value: str | int) -> int:
    """`128Gi` → 137438953472; plain integers are bytes. Raises ValueError naming the expected form."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value}: sizes cannot be negative")
        return value
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a size; write e.g. 512Mi, 128Gi or 1Ti")
    number, unit = match.groups()
    factor = _BINARY.get(unit or "") or _DECIMAL.get(unit or "", 1)
    return int(Decimal(number) * factor)


def parse_cpu_millis(value: str | int | float) -> int:
    """`16` → 16000, `500m` → 500, `0.5` → 500. Raises ValueError naming the expected form."""
    text = str(value).strip()
    try:
        millis = Decimal(text[:-1]) if text.endswith("m") else Decimal(text) * 1000
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a CPU amount; write e.g. 16, 0.5 or 500m") from None
    if millis < 0:
        raise ValueError(f"{value!r}: CPU cannot be negative")
    return int(millis)


def parse_duration(value: str) -> dt.timedelta:
    """`30m` → 30 minutes, `1h30m` → 90 minutes. Raises ValueError naming the expected form."""
    text = value.strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"{value!r} is not a duration; write e.g. 30m, 24h or 1h30m")
    return dt.timedelta(seconds=sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts))
