"""Kubernetes-style quantities and Go-style durations, as users write them in specs.

Every parser refuses what it cannot turn into a finite number within its column's range (`NaN`, `inf`,
`1e300`, sizes past a bigint of bytes) with a ValueError naming the bound, so a hostile value is a 422
naming the field, never an arithmetic error (500) or Postgres's "bigint out of range".
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Plain decimal notation with an optional exponent (`16`, `0.5`, `1e3`, `500m`): no NaN, inf or `_`.
_CPU = re.compile(r"^\+?(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)(?P<milli>m)?$")

BIGINT_MAX = 2**63 - 1
"""The largest value of a Postgres bigint: byte and millicore columns hold at most this."""
MAX_DURATION = dt.timedelta(days=3650)
"""Ten years: longer durations are mistakes, and far ones overflow date arithmetic."""


def parse_bytes(value: str | int, *, at_most: int = BIGINT_MAX) -> int:
    """`128Gi` → 137438953472; plain integers are bytes. Raises ValueError naming the expected form, or
    the bound when the size is over `at_most` bytes."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value}: sizes cannot be negative")
        size = value
    else:
        match = _QUANTITY.match(value.strip())
        if match is None:
            raise ValueError(f"{value!r} is not a size; write e.g. 512Mi, 128Gi or 1Ti")
        number, unit = match.groups()
        factor = _BINARY.get(unit or "") or _DECIMAL.get(unit or "", 1)
        size = int(Decimal(number) * factor)
    if size > at_most:
        raise ValueError(f"must be at most {_size_words(at_most)}, not {value}")
    return size


def format_bytes(size: int) -> str:
    """A size in the largest binary unit that divides it exactly (`10Gi`), else in bytes."""
    return _size_words(size)


def _size_words(size: int) -> str:
    if size == BIGINT_MAX:
        return f"{size} bytes (just under 8Ei)"
    for unit, factor in sorted(_BINARY.items(), key=lambda item: -item[1]):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size} bytes"


def parse_cpu_millis(value: str | int | float, *, at_most: int = BIGINT_MAX) -> int:
    """`16` → 16000, `500m` → 500, `0.5` → 500. Raises ValueError naming the expected form, or the bound:
    at least one millicore (or none), at most `at_most` millicores."""
    text = str(value).strip()
    negative = text.startswith("-")
    match = _CPU.match(text.removeprefix("-"))
    if match is None:
        raise ValueError(f"{value!r} is not a CPU amount; write e.g. 16, 0.5 or 500m")
    number = Decimal(match["number"])
    if negative and number != 0:
        raise ValueError(f"{value!r}: CPU cannot be negative")
    per_unit = 1 if match["milli"] else 1000
    # compared before multiplying: the number may carry any exponent (`1e300`, `1e-999999`)
    if number > Decimal(at_most) / per_unit:
        raise ValueError(f"must be at most {_cpu_words(at_most)}, not {value}")
    if 0 < number < Decimal(1) / per_unit:
        raise ValueError(f"must be at least 1m (0.001 of a core) or 0, not {value}")
    return int(number * per_unit)


def _cpu_words(millis: int) -> str:
    return f"{millis // 1000} cores" if millis % 1000 == 0 else f"{millis}m"


def parse_duration(value: str) -> dt.timedelta:
    """`30m` → 30 minutes, `1h30m` → 90 minutes. Raises ValueError naming the expected form."""
    text = value.strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"{value!r} is not a duration; write e.g. 30m, 24h or 1h30m")
    seconds = sum(Decimal(number) * Decimal(str(_DURATION_UNITS[unit])) for number, unit in parts)
    if seconds > Decimal(MAX_DURATION.total_seconds()):
        raise ValueError(f"must be at most {MAX_DURATION.days}d, not {value}")
    return dt.timedelta(seconds=float(seconds))
