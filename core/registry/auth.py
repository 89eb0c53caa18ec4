"""Registry credentials, and the `WWW-Authenticate` challenge a registry answers a 401 with.

A Distribution registry says how it wants to be authenticated: `Basic realm=…` (htpasswd) or
`Bearer realm=…,service=…,scope=…` (token auth, answered by `core/registry/tokens.py`). The password never
leaves the `Authorization` header: not in a repr, a log line or an error.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True)
class RegistryCredentials:
    """A user (or robot account) and its password or secret."""

    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        """The `Authorization` header value for HTTP Basic."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@dataclass(frozen=True)
class Challenge:
    """One `WWW-Authenticate` challenge: its scheme (lower case) and parameters."""

    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """The challenge of a `WWW-Authenticate` header (registries send one); None if there is none."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), {k: v.replace('\\"', '"') for k, v in params.items()})
