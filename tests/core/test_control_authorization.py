"""Who may act on the catalog, quotas, hosts and bills is decided in core, whoever calls it: a platform
admin for hosts and quotas, a workspace admin for private images and bills, and another workspace's
things read as not found. Every allowed change leaves its audit event."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import Connection, Engine, text

from remotegpu.core.accounts.membership import add_member, create_workspace, workspace_access
from remotegpu.core.accounts.users import Principal
from remotegpu.core.billing.views import list_invoices, list_records
from remotegpu.core.capacity import quota_control
from remotegpu.core.catalog.control import NewImage, add_image, remove_image
from remotegpu.core.catalog.images import get_image
from remotegpu.core.environments.states import GpuHealth, ImageVisibility, UserRole, WorkspaceRole
from remotegpu.core.inventory import control as host_control
from remotegpu.core.inventory.views import list_gpus, list_hosts
from remotegpu.core.platform.errors import ForbiddenError, InvalidInputError, NotFoundError
from remotegpu.tests.allocation_world import make_host, make_user


@dataclass(frozen=True)
class World:
    """`admin` runs the platform; `owner` owns `research`, where `member` is a plain member; `outsider`
    belongs to no workspace."""

    admin: Principal
    owner: Principal
    member: Principal
    outsider: Principal
    research: uuid.UUID


def _principal(connection: Connection, name: str, role: UserRole = UserRole.USER) -> Principal:
    user_id = make_user(connection, name)
    connection.execute(
        text("UPDATE users SET role = :role WHERE id = :id"), {"role": role.value, "id": user_id}
    )
    return Principal(user_id, name, f"{name}@example.org", role)


@pytest.fixture
def world(db: Engine) -> World:
    with db.begin() as connection:
        admin = _principal(connection, "root", UserRole.ADMIN)
        owner, member, outsider = (_principal(connection, name) for name in ("olga", "mia", "otto"))
        research = create_workspace(connection, owner, "research", "").id
        access = workspace_access(connection, owner, research)
        add_member(connection, owner, access, "mia", WorkspaceRole.MEMBER)
    return World(admin, owner, member, outsider, research)


def _events(connection: Connection, reason: str) -> list[uuid.UUID | None]:
    return list(
        connection.execute(
            text("SELECT actor_user_id FROM events WHERE reason = :r"), {"r": reason}
        ).scalars()
    )


def _private_image(connection: Connection, world: World) -> uuid.UUID:
    image = NewImage("torch", "nvcr.io/nvidia/pytorch:24.05-py3", ImageVisibility.PRIVATE, world.research)
    image_id: uuid.UUID = add_image(connection, world.owner, image).id
    return image_id


def test_a_private_image_of_another_workspace_is_not_found(db: Engine, world: World) -> None:
    with db.begin() as connection:
        image_id = _private_image(connection, world)
    with db.begin() as connection:
        with pytest.raises(NotFoundError):
            get_image(connection, world.outsider, image_id)
        with pytest.raises(NotFoundError):
            remove_image(connection, world.outsider, image_id)
    with db.begin() as connection:
        assert get_image(connection, world.member, image_id).name == "torch"


def test_only_workspace_admins_remove_a_private_image_and_the_removal_is_audited(
    db: Engine, world: World
) -> None:
    with db.begin() as connection:
        image_id = _private_image(connection, world)
    with db.begin() as connection, pytest.raises(ForbiddenError):
        remove_image(connection, world.member, image_id)
    with db.begin() as connection:
        remove_image(connection, world.owner, image_id)
        assert _events(connection, "ImageAdded") == [world.owner.user_id]
        assert _events(connection, "ImageRemoved") == [world.owner.user_id]


def test_adding_images_needs_the_right_role(db: Engine, world: World) -> None:
    public = NewImage("ubuntu", "docker.io/library/ubuntu:24.04", ImageVisibility.PUBLIC)
    with db.begin() as connection, pytest.raises(ForbiddenError):
        add_image(connection, world.owner, public)
    private = NewImage("ubuntu", "docker.io/library/ubuntu:24.04", ImageVisibility.PRIVATE, "research")
    with db.begin() as connection, pytest.raises(ForbiddenError):
        add_image(connection, world.member, private)
    with db.begin() as connection, pytest.raises(NotFoundError):
        add_image(connection, world.outsider, private)
    unowned = NewImage("ubuntu", "docker.io/library/ubuntu:24.04", ImageVisibility.PRIVATE)
    with db.begin() as connection, pytest.raises(InvalidInputError):
        add_image(connection, world.owner, unowned)
    with db.begin() as connection:
        assert add_image(connection, world.admin, public).owner_workspace_id is None


def test_a_non_admin_cannot_cordon_drain_or_read_hosts(db: Engine, world: World) -> None:
    with db.begin() as connection:
        host = make_host(connection, gpus=1)
    gpu = uuid.uuid4()  # never looked up: the caller is refused first
    refused: list[Callable[[Connection], object]] = [
        lambda c: host_control.cordon(c, world.owner, host, "maintenance"),
        lambda c: host_control.uncordon(c, world.owner, host),
        lambda c: host_control.drain(c, world.owner, host, ""),
        lambda c: host_control.set_health(c, world.owner, gpu, GpuHealth.UNHEALTHY, ""),
        lambda c: list_hosts(c, world.owner, limit=10, cursor=None),
        lambda c: list_gpus(c, world.owner),
    ]
    for act in refused:
        with db.begin() as connection, pytest.raises(ForbiddenError):
            act(connection)
    with db.begin() as connection:
        assert (
            connection.execute(text("SELECT cordoned FROM hosts WHERE id = :id"), {"id": host}).scalar()
            is False
        )


def test_an_admin_cordon_records_who_asked_and_the_host_event(db: Engine, world: World) -> None:
    with db.begin() as connection:
        host = make_host(connection, gpus=1)
    with db.begin() as connection:
        assert host_control.cordon(connection, world.admin, host, "maintenance").cordoned
        assert _events(connection, "HostCordoned") == [world.admin.user_id]
        assert _events(connection, "Cordoned") == [None]  # the host's own event, which the audit replays
        with pytest.raises(NotFoundError):
            host_control.cordon(connection, world.admin, uuid.uuid4(), "")
        host_control.uncordon(connection, world.admin, host)


def test_quotas_are_read_by_their_subject_and_set_by_platform_admins(db: Engine, world: World) -> None:
    limits = quota_control.RequestedLimits(gpus=4, memory="64Gi")
    with db.begin() as connection:
        assert quota_control.user_quota(connection, world.member, world.member.user_id).max_gpus is None
        assert quota_control.workspace_quota(connection, world.member, world.research).max_gpus is None
        with pytest.raises(NotFoundError):
            quota_control.user_quota(connection, world.member, world.owner.user_id)
        with pytest.raises(NotFoundError):
            quota_control.workspace_quota(connection, world.outsider, world.research)
    admin_only: list[Callable[[Connection], object]] = [
        lambda c: quota_control.set_user_quota(c, world.owner, world.owner.user_id, limits),
        lambda c: quota_control.set_workspace_quota(c, world.owner, world.research, limits),
    ]
    for act in admin_only:
        with db.begin() as connection, pytest.raises(ForbiddenError):
            act(connection)
    with db.begin() as connection:
        state = quota_control.set_workspace_quota(connection, world.admin, world.research, limits)
        assert (state.max_gpus, state.max_memory_bytes) == (4, 64 * 2**30)
        assert _events(connection, "QuotaChanged") == [world.admin.user_id]


def test_a_malformed_limit_is_refused_only_to_a_caller_who_may_set_it(db: Engine, world: World) -> None:
    bad = quota_control.RequestedLimits(cpu="lots")
    with db.begin() as connection, pytest.raises(ForbiddenError):
        quota_control.set_user_quota(connection, world.owner, world.owner.user_id, bad)
    with db.begin() as connection, pytest.raises(InvalidInputError, match=r"^\$\.cpu: "):
        quota_control.set_user_quota(connection, world.admin, world.owner.user_id, bad)


def test_bills_of_a_workspace_are_for_its_admins(db: Engine, world: World) -> None:
    with db.begin() as connection:
        for read in (list_records, list_invoices):
            assert read(connection, world.owner, "research", limit=10, cursor=None) == ([], None)
            assert read(connection, world.admin, "research", limit=10, cursor=None) == ([], None)
            with pytest.raises(ForbiddenError):
                read(connection, world.member, "research", limit=10, cursor=None)
            with pytest.raises(NotFoundError):
                read(connection, world.outsider, "research", limit=10, cursor=None)
