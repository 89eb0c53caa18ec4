"""The image catalog: public images and the private images of the caller's workspaces."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Router, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.openapi import answers
from remotegpu.core.catalog.control import NewImage, add_image, remove_image
from remotegpu.core.catalog.images import full_reference, get_image, list_images
from remotegpu.core.catalog.sync import sync_catalog
from remotegpu.core.environments.states import ImageVisibility
from remotegpu.core.platform.events import record_mutation
from remotegpu.core.platform.pagination import MAX_PAGE_SIZE
from remotegpu.core.registry.configured import get_registry
from remotegpu.core.registry.directory import RegistryDirectory

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)]


class ImageIn(msgspec.Struct, forbid_unknown_fields=True):
    """A catalog entry: public ones need a platform admin; private ones belong to `workspace`."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    reference: Annotated[
        str, msgspec.Meta(min_length=1, max_length=700, examples=["nvcr.io/nvidia/pytorch:24.05-py3"])
    ]
    visibility: ImageVisibility = ImageVisibility.PRIVATE
    workspace: str | None = None
    digest: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9]+:[a-f0-9]{32,}$")] | None = None
    framework: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    cuda_version: Annotated[str, msgspec.Meta(max_length=16)] | None = None
    size_bytes: Annotated[int, msgspec.Meta(ge=0)] | None = None


class ImageOut(msgspec.Struct):
    """A catalog entry."""

    id: uuid.UUID
    name: str
    reference: str
    digest: str | None
    framework: str | None
    cuda_version: str | None
    size_bytes: int | None
    visibility: str
    owner_workspace_id: uuid.UUID | None
    source: str
    """`manual`, or the kind of registry a sync took it from (`oci`, `harbor`)."""
    created_at: dt.datetime
    registry: str | None = None
    """The configured registry it is synced from (null: added by hand)."""
    synced_at: dt.datetime | None = None
    """The last catalog sync that found it at its registry."""
    gone_at: dt.datetime | None = None
    """When a sync found it removed from its registry: running environments keep it, new ones are refused."""
    labels: list[str] = msgspec.field(default_factory=list)
    pushed_at: dt.datetime | None = None


class ImageList(msgspec.Struct):
    """A page of images by name."""

    items: list[ImageOut]
    next_cursor: str | None = None


def image_out(row: Any) -> ImageOut:
    """An image row as the API shows it."""
    return ImageOut(
        row.id,
        row.name,
        full_reference(row),
        row.digest,
        row.framework,
        row.cuda_version,
        row.size_bytes,
        str(row.visibility),
        row.owner_workspace_id,
        row.source,
        row.created_at,
        row.registry,
        row.synced_at,
        row.gone_at,
        list(row.labels or []),
        row.pushed_at,
    )


@post("/", status_code=201, sync_to_thread=True, opt=answers(403, 404, 409))
def create(data: JSONBody[ImageIn], request: AnyRequest, api: Api) -> ImageOut:
    """Add an image: private to a workspace (its admins) or public (platform admins). A reference is
    unique within the public catalog and within each workspace: 409 only for one already there."""
    image = NewImage(
        data.name,
        data.reference,
        data.visibility,
        data.workspace,
        data.digest,
        data.framework,
        data.cuda_version,
        data.size_bytes,
    )
    with api.acting(request) as (connection, principal):
        return image_out(add_image(connection, principal, image))


@get("/", sync_to_thread=True)
def list_all(
    request: AnyRequest,
    api: Api,
    limit: Limit = 50,
    cursor: FromQuery[str | None] = None,
    include_gone: FromQuery[bool] = False,
) -> ImageList:
    """Images the caller can use, by name, with where each came from and when a sync last found it;
    `include_gone=true` adds those removed from their registry."""
    with api.acting(request) as (connection, principal):
        rows, following = list_images(
            connection, principal, query=None, limit=limit, cursor=cursor, include_gone=include_gone
        )
    return ImageList([image_out(r) for r in rows], following)


@get("/search", sync_to_thread=True)
def search(
    request: AnyRequest,
    api: Api,
    q: Annotated[str, QueryParameter(min_length=1, max_length=100)],
    limit: Limit = 50,
    cursor: FromQuery[str | None] = None,
) -> ImageList:
    """Images whose name, repository or framework contains `q` (case-insensitive)."""
    with api.acting(request) as (connection, principal):
        rows, following = list_images(connection, principal, query=q, limit=limit, cursor=cursor)
    return ImageList([image_out(r) for r in rows], following)


@get("/{image_id:uuid}", sync_to_thread=True)
def show(image_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> ImageOut:
    """One image."""
    with api.acting(request) as (connection, principal):
        return image_out(get_image(connection, principal, image_id))


@delete("/{image_id:uuid}", sync_to_thread=True, opt=answers(403))
def remove(image_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> None:
    """Remove an image from the catalog (running environments keep theirs)."""
    with api.acting(request) as (connection, principal):
        remove_image(connection, principal, image_id)


class SyncReportOut(msgspec.Struct):
    """What a sync of one registry did."""

    registry: str
    images: int
    """Entries the registry holds now."""
    gone: int
    """Entries newly marked gone (removed upstream)."""
    error: str | None
    """Why nothing was synced from it (unreachable, login refused); its entries were left as they were."""


class SyncOut(msgspec.Struct):
    """One report per configured registry synced."""

    registries: list[SyncReportOut]


@post("/sync", status_code=200, sync_to_thread=True, opt=answers(403, 404))
def sync(request: AnyRequest, api: Api, registry: FromQuery[str | None] = None) -> SyncOut:
    """Sync the catalog from every configured registry (or the one named) now, as the leader's job does
    every `registry_sync_seconds` (platform admins). No database session is held while the registries
    are read."""
    with api.acting(request, admin=True) as (connection, principal):
        if registry is not None:
            get_registry(connection, registry)
        record_mutation(
            connection,
            principal.user_id,
            "CatalogSyncRequested",
            "catalog sync requested",
            data={"registry": registry},
        )
    directory = RegistryDirectory(api.engine, api.secret_store, api.registry_clients)
    reports = sync_catalog(api.engine, directory, registry=registry)
    return SyncOut([SyncReportOut(r.registry, r.images, r.gone, r.error) for r in reports])


router = Router("/images", route_handlers=[create, list_all, search, sync, show, remove], tags=["images"])
