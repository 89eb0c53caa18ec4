"""`s3://bucket/prefix` URLs of S3-sourced datasets, parsed once at the edge."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from remotegpu.core.platform.errors import InvalidInputError

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
"""S3's bucket naming rules: 3-63 lower-case letters, digits, dots and hyphens."""


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (empty: the whole bucket)."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_s3_url(value: str, field: str = "$.url") -> S3Location:
    """`s3://bucket[/prefix]`; InvalidInputError naming `field` and the form to write otherwise."""
    parts = urlsplit(value)
    if parts.scheme != "s3" or not parts.netloc:
        raise InvalidInputError(field, f"{value[:200]!r} is not an S3 URL; write s3://BUCKET/PREFIX")
    if parts.query or parts.fragment:
        raise InvalidInputError(field, "an S3 URL has no query or fragment; write s3://BUCKET/PREFIX")
    if not _BUCKET.match(parts.netloc) or ".." in parts.netloc:
        raise InvalidInputError(
            field,
            f"{parts.netloc[:70]!r} is not a valid bucket name (3-63 lower-case letters, digits, dots and hyphens)",
        )
    return S3Location(parts.netloc, parts.path.lstrip("/"))
