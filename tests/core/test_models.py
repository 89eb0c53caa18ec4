"""The database constraints that guard the invariants refuse what they must, and allow what they should."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from remotegpu.core.environments.states import (
    ActorKind,
    ClaimAction,
    ClaimKind,
    InvoiceStatus,
    MeteredResource,
    PortPurpose,
    Protocol,
)
from remotegpu.core.models import (
    ClaimHistory,
    Environment,
    Event,
    Gpu,
    GpuClaim,
    Host,
    Image,
    Invoice,
    InvoiceLine,
    PortMapping,
    ResourceQuota,
    User,
    Workspace,
)
from remotegpu.core.platform import clock
from remotegpu.core.platform.db import transaction
from remotegpu.tests import factories

Sessions = sessionmaker[Session]


def _refused(sessions: Sessions, change: Callable[[Session], object], match: str) -> None:
    """Assert that `change` fails with a database error whose text contains `match`."""
    with pytest.raises(DBAPIError, match=match), transaction(sessions) as session:
        change(session)
        session.flush()


def _world(sessions: Sessions) -> tuple[Workspace, Host, Environment, Environment]:
    with transaction(sessions) as session:
        owner = factories.user(session)
        ws = factories.workspace(session, owner)
        node = factories.host(session, gpus=2)
        first = factories.environment(session, ws, owner)
        second = factories.environment(session, ws, owner)
        return ws, node, first, second


def _gpu(sessions: Sessions, host: Host, index: int = 0) -> Gpu:
    with transaction(sessions) as session:
        return session.query(Gpu).filter_by(host_id=host.id, index=index).one()


def test_second_active_claim_on_same_gpu_is_refused(sessions: Sessions) -> None:
    _, node, first, second = _world(sessions)
    gpu = _gpu(sessions, node)
    with transaction(sessions) as session:
        session.add(GpuClaim(gpu_id=gpu.id, environment_id=first.id, host_id=node.id))
    _refused(
        sessions,
        lambda s: s.add(GpuClaim(gpu_id=gpu.id, environment_id=second.id, host_id=node.id)),
        "uq_gpu_claims_gpu_id_active",
    )


def test_released_gpu_can_be_claimed_again(sessions: Sessions) -> None:
    _, node, first, second = _world(sessions)
    gpu = _gpu(sessions, node)
    with transaction(sessions) as session:
        session.add(GpuClaim(gpu_id=gpu.id, environment_id=first.id, host_id=node.id))
    with transaction(sessions) as session:
        session.execute(update(GpuClaim).where(GpuClaim.gpu_id == gpu.id).values(released_at=clock.now()))
    with transaction(sessions) as session:
        session.add(GpuClaim(gpu_id=gpu.id, environment_id=second.id, host_id=node.id))
    with transaction(sessions) as session:
        assert session.query(GpuClaim).filter_by(gpu_id=gpu.id).count() == 2


def test_duplicate_active_host_port_and_protocol_is_refused(sessions: Sessions) -> None:
    _, node, first, second = _world(sessions)

    def mapping(env: Environment, protocol: Protocol) -> PortMapping:
        return PortMapping(
            environment_id=env.id,
            host_id=node.id,
            container_port=22,
            host_port=30022,
            protocol=protocol,
            purpose=PortPurpose.SSH,
        )

    with transaction(sessions) as session:
        session.add(mapping(first, Protocol.TCP))
    _refused(sessions, lambda s: s.add(mapping(second, Protocol.TCP)), "uq_port_mappings_host_port_active")
    with transaction(sessions) as session:
        session.add(mapping(second, Protocol.UDP))  # same port, other protocol: allowed


def test_host_port_outside_the_valid_range_is_refused(sessions: Sessions) -> None:
    _, node, first, _ = _world(sessions)
    bad = PortMapping(
        environment_id=first.id, host_id=node.id, container_port=22, host_port=70000, purpose=PortPurpose.SSH
    )
    _refused(sessions, lambda s: s.add(bad), "ck_port_mappings_ports_valid")


def test_duplicate_environment_name_in_a_workspace_is_refused_until_the_first_is_deleted(
    sessions: Sessions,
) -> None:
    ws, _, first, _ = _world(sessions)
    with transaction(sessions) as session:
        other_ws = factories.workspace(session, factories.user(session))
        factories.environment(session, other_ws, factories.user(session), name=first.name)  # other workspace

    def twin(session: Session) -> None:
        session.add(Environment(workspace_id=ws.id, user_id=first.user_id, name=first.name, spec={}))

    _refused(sessions, twin, "uq_environments_workspace_id_name_live")
    with transaction(sessions) as session:
        session.execute(update(Environment).where(Environment.id == first.id).values(deleted_at=clock.now()))
    with transaction(sessions) as session:
        twin(session)


def test_environment_name_must_be_a_dns_label(sessions: Sessions) -> None:
    ws, _, first, _ = _world(sessions)
    bad = Environment(workspace_id=ws.id, user_id=first.user_id, name="Bad_Name", spec={})
    _refused(sessions, lambda s: s.add(bad), "ck_environments_name_dns_label")


def test_hard_deleting_a_workspace_with_billing_rows_is_refused(sessions: Sessions) -> None:
    ws, _, first, _ = _world(sessions)
    with transaction(sessions) as session:
        factories.billing_interval(session, session.get_one(Environment, first.id))
    _refused(
        sessions, lambda s: s.execute(delete(Workspace).where(Workspace.id == ws.id)), "violates foreign key"
    )
    with transaction(sessions) as session:
        assert session.get(Workspace, ws.id) is not None


def test_quota_counters_cannot_go_negative(sessions: Sessions) -> None:
    ws, _, _, _ = _world(sessions)
    with transaction(sessions) as session:
        session.add(ResourceQuota(workspace_id=ws.id, max_gpus=4))
    _refused(
        sessions,
        lambda s: s.execute(update(ResourceQuota).values(used_gpus=ResourceQuota.used_gpus - 1)),
        "ck_resource_quotas_usage_not_negative",
    )


def test_quota_names_exactly_one_subject(sessions: Sessions) -> None:
    ws, _, first, _ = _world(sessions)
    _refused(
        sessions,
        lambda s: s.add(ResourceQuota(workspace_id=ws.id, user_id=first.user_id)),
        "ck_resource_quotas_one_subject",
    )


def test_claim_history_is_append_only(sessions: Sessions) -> None:
    _, node, first, _ = _world(sessions)
    gpu = _gpu(sessions, node)
    with transaction(sessions) as session:
        session.add(
            ClaimHistory(
                kind=ClaimKind.GPU,
                action=ClaimAction.CLAIM,
                environment_id=first.id,
                workspace_id=first.workspace_id,
                user_id=first.user_id,
                host_id=node.id,
                gpu_id=gpu.id,
                gpu_model=gpu.model,
            )
        )
    _refused(sessions, lambda s: s.execute(update(ClaimHistory).values(host_port=1)), "append-only")
    _refused(sessions, lambda s: s.execute(delete(ClaimHistory)), "append-only")


def test_event_log_is_append_only(sessions: Sessions) -> None:
    ws, _, _, _ = _world(sessions)
    with transaction(sessions) as session:
        session.add(Event(actor_kind=ActorKind.SYSTEM, workspace_id=ws.id, kind="api", reason="Created"))
    _refused(sessions, lambda s: s.execute(update(Event).values(reason="Edited")), "append-only")


def test_finalized_invoice_and_its_lines_are_immutable(sessions: Sessions) -> None:
    ws, _, _, _ = _world(sessions)
    start = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    with transaction(sessions) as session:
        invoice = Invoice(
            workspace_id=ws.id, period_start=start, period_end=start + dt.timedelta(days=31), currency="EUR"
        )
        session.add(invoice)
        session.flush()
        session.add(
            InvoiceLine(
                invoice_id=invoice.id,
                description="H100",
                resource=MeteredResource.GPU,
                gpu_model="H100",
                quantity=1,
                unit="gpu_hour",
                unit_price=2,
                amount=2,
            )
        )
    with transaction(sessions) as session:  # a draft may still change
        session.execute(
            update(Invoice)
            .where(Invoice.id == invoice.id)
            .values(status=InvoiceStatus.FINALIZED, finalized_at=clock.now(), total=2)
        )
    _refused(sessions, lambda s: s.execute(update(Invoice).values(total=3)), "finalized and immutable")
    _refused(sessions, lambda s: s.execute(update(InvoiceLine).values(amount=3)), "finalized and immutable")
    _refused(
        sessions,
        lambda s: s.add(
            InvoiceLine(
                invoice_id=invoice.id,
                description="x",
                resource=MeteredResource.GPU,
                gpu_model="A100",
                quantity=1,
                unit="gpu_hour",
                unit_price=1,
                amount=1,
            )
        ),
        "finalized and immutable",
    )


def test_private_image_needs_an_owner_workspace(sessions: Sessions) -> None:
    bad = Image(
        name="torch", registry_host="harbor.example.org", repository="ml/torch", tag="1", visibility="private"
    )
    _refused(sessions, lambda s: s.add(bad), "ck_images_private_has_owner")


def test_host_port_range_must_be_ordered(sessions: Sessions) -> None:
    _refused(
        sessions,
        lambda s: s.add(Host(name="bad-range", port_range_start=40000, port_range_end=30000)),
        "ck_hosts_port_range_valid",
    )


def test_enum_columns_refuse_unknown_values_at_the_database(sessions: Sessions) -> None:
    _, _, first, _ = _world(sessions)
    _refused(
        sessions,
        lambda s: s.execute(
            text("UPDATE environments SET phase = 'exploded' WHERE id = :id"), {"id": first.id}
        ),
        "ck_environments_phase",
    )


def test_transaction_commits_on_return_and_rolls_back_on_error(sessions: Sessions) -> None:
    with transaction(sessions) as session:
        factories.user(session, name="kept")
    with pytest.raises(RuntimeError), transaction(sessions) as session:
        factories.user(session, name="dropped")
        raise RuntimeError("boom")
    with transaction(sessions) as session:
        names = set(session.execute(text("SELECT username FROM users")).scalars())
    assert names == {"kept"}


@pytest.mark.parametrize(
    ("email", "username", "constraint"),
    [("twin@example.org", "other", "uq_users_email"), ("other@example.org", "twin", "uq_users_username")],
)
def test_email_and_username_are_each_unique(
    sessions: Sessions, email: str, username: str, constraint: str
) -> None:
    with transaction(sessions) as session:
        session.add(User(email="twin@example.org", username="twin", password_hash="h"))
    with pytest.raises(IntegrityError, match=constraint), transaction(sessions) as session:
        session.add(User(email=email, username=username, password_hash="h"))
        session.flush()
