"""Small builders for rows the tests need; each returns the flushed model with its id."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

from sqlalchemy.orm import Session

from remotegpu.core.environments.states import MeteredResource
from remotegpu.core.models import BillingInterval, Environment, Gpu, Host, Meter, User, Workspace
from remotegpu.core.platform import clock

_counter = itertools.count(1)


def user(session: Session, *, name: str | None = None) -> User:
    """A user with a unique name and e-mail address."""
    name = name or f"user{next(_counter)}"
    row = User(email=f"{name}@example.org", username=name, password_hash="argon2-placeholder")
    session.add(row)
    session.flush()
    return row


def workspace(session: Session, owner: User, *, name: str | None = None) -> Workspace:
    """A live workspace owned by `owner`."""
    row = Workspace(name=name or f"ws{next(_counter)}", owner_id=owner.id)
    session.add(row)
    session.flush()
    return row


def host(session: Session, *, gpus: int = 2, model: str = "H100") -> Host:
    """A ready host with `gpus` healthy GPUs of `model`."""
    row = Host(
        name=f"node-{next(_counter)}", cpu_millis_allocatable=64_000, memory_bytes_allocatable=512 << 30
    )
    session.add(row)
    session.flush()
    for index in range(gpus):
        session.add(Gpu(host_id=row.id, index=index, model=model))
    session.flush()
    return row


def environment(session: Session, ws: Workspace, owner: User, *, name: str | None = None) -> Environment:
    """A pending environment asking for one GPU."""
    row = Environment(
        workspace_id=ws.id, user_id=owner.id, name=name or f"env{next(_counter)}", spec={}, gpu_count=1
    )
    session.add(row)
    session.flush()
    return row


def billing_interval(session: Session, env: Environment) -> BillingInterval:
    """One hour of one H100 for `env`, at 2.50 per GPU-hour, on a meter of its own."""
    start = clock.now().replace(microsecond=0)
    meter = Meter(
        environment_id=env.id,
        workspace_id=env.workspace_id,
        user_id=env.user_id,
        resource=MeteredResource.GPU,
        gpu_model="H100",
        quantity=Decimal(1),
        started_at=start,
        metered_until=start + dt.timedelta(hours=1),
        amount=Decimal("2.50"),
    )
    session.add(meter)
    session.flush()
    row = BillingInterval(
        meter_id=meter.id,
        environment_id=env.id,
        workspace_id=env.workspace_id,
        user_id=env.user_id,
        resource=MeteredResource.GPU,
        gpu_model="H100",
        quantity=Decimal(1),
        unit="gpu_hour",
        started_at=start,
        ended_at=start + dt.timedelta(hours=1),
        currency="EUR",
        unit_price=Decimal("2.50"),
        amount=Decimal("2.50"),
    )
    session.add(row)
    session.flush()
    return row
