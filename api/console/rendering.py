"""Jinja for the console: one environment for whole pages (Litestar's template engine) and for the
fragments pushed over server-sent events, with the filters that keep units and times readable."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import jinja2
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig
from markupsafe import Markup, escape

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def when(value: dt.datetime | str | None) -> Markup:
    """A `<time>` the browser shows in the viewer's time zone (`console.js`); UTC text without script."""
    if value is None or value == "":
        return Markup("—")
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    moment = moment.astimezone(dt.UTC)
    iso = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    return Markup('<time datetime="{}">{}</time>').format(iso, moment.strftime("%Y-%m-%d %H:%M:%S UTC"))


def money(value: Any, currency: str = "") -> str:
    """An amount rounded to cents, with its currency."""
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return f"{value} {currency}".strip()
    return f"{amount} {currency}".strip()


def gib(value: int | None) -> str:
    """Bytes as GiB, with the unit."""
    if value is None:
        return "—"
    return f"{value / 2**30:.1f} GiB"


def cores(millis: int | None) -> str:
    """CPU millicores as cores, with the unit."""
    if millis is None:
        return "—"
    return f"{millis / 1000:g} cores"


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(when=when, money=money, gib=gib, cores=cores)
    return environment


JINJA = _environment()


def render(name: str, **context: Any) -> str:
    """A template as text (the fragments sent over server-sent events)."""
    return JINJA.get_template(name).render(**context)


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Litestar's template configuration over the console's Jinja environment."""
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(JINJA))


__all__ = ["JINJA", "STATIC", "escape", "render", "template_config", "when"]
