"""What a running API process takes from reloaded settings: the sign-in limits and the CORS origins.

Both are read per request from holders the app keeps (`LiveApiSettings`), so a reload swaps them without
a restart. CORS can change its origins only where it was on at start (Litestar installs its middleware
when the app is built): turning it on from none needs a restart, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.config.cors import CORSConfig

from remotegpu.core.accounts.sign_in_limits import SignInLimits
from remotegpu.core.platform.settings import Settings

_CORS_CACHED = ("allowed_origins_regex", "is_allow_all_origins", "preflight_headers", "simple_headers")
"""CORSConfig's cached properties that depend on its origins."""


@dataclass
class LiveApiSettings:
    """The API's settings a reload may change, read per request."""

    sign_in_limits: SignInLimits
    cors: CORSConfig | None

    def apply(self, new: Settings) -> set[str]:
        """Take what may change from `new`; returns the names taken."""
        applied: set[str] = set()
        limits = SignInLimits(new.login_attempts_per_minute, new.login_failures_per_account_per_hour)
        if limits != self.sign_in_limits:
            self.sign_in_limits = limits
            applied |= {"login_attempts_per_minute", "login_failures_per_account_per_hour"}
        if self.cors is not None and new.cors_origins and new.cors_origins != self.cors.allow_origins:
            self.cors.allow_origins = list(new.cors_origins)
            for cached in _CORS_CACHED:
                self.cors.__dict__.pop(cached, None)
            applied.add("cors_origins")
        return applied
