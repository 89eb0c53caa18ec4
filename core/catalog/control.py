"""What a user may do to the image catalog: add and remove entries, with the role checks and the audit.

Public entries are the platform's: only platform admins add or remove them. A private entry belongs to
one workspace, whose admins (and owners) manage it. Another workspace's private entry reads as one that
does not exist (NotFoundError), never as one the caller may not touch. Every change records an event
in the caller's transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from remotegpu.core.accounts.membership import workspace_access
from remotegpu.core.accounts.users import Principal
from remotegpu.core.catalog.images import IMAGE_COLUMNS, get_image, split_reference
from remotegpu.core.environments.states import ImageVisibility
from remotegpu.core.platform.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from remotegpu.core.platform.events import record_mutation
from remotegpu.policies.roles import Action, allows


@dataclass(frozen=True)
class NewImage:
    """A catalog entry to add; a private one names its `workspace` (by name or id)."""

    name: str
    reference: str
    visibility: ImageVisibility
    workspace: str | uuid.UUID | None = None
    digest: str | None = None
    framework: str | None = None
    cuda_version: str | None = None
    size_bytes: int | None = None


def add_image(connection: Connection, principal: Principal, image: NewImage) -> Any:
    """Add a catalog entry: private ones need a workspace admin of `image.workspace`, public ones a
    platform admin. The same registry/repository:tag twice in one namespace (the public catalog, or one
    workspace's private entries) is a conflict, in two namespaces it is not."""
    owner = _owner_for_new(connection, principal, image)
    registry, repository, tag = split_reference(image.reference)
    # No savepoint: a refused INSERT aborts the transaction, which the raise below ends anyway.
    try:
        row = connection.execute(
            text(
                "INSERT INTO images AS i (name, registry_host, repository, tag, digest, framework, cuda_version,"
                " size_bytes, visibility, owner_workspace_id)"
                " VALUES (:name, :registry, :repository, :tag, :digest, :framework, :cuda, :size, :visibility,"
                f" :owner) RETURNING {IMAGE_COLUMNS}"
            ),
            {
                "name": image.name,
                "registry": registry,
                "repository": repository,
                "tag": tag,
                "digest": image.digest,
                "framework": image.framework,
                "cuda": image.cuda_version,
                "size": image.size_bytes,
                "visibility": image.visibility.value,
                "owner": owner,
            },
        ).one()
    except IntegrityError as error:
        if "digest" in str(error.orig):
            raise InvalidInputError("$.digest", "write algorithm:hex, e.g. sha256:0123…") from None
        namespace = "public catalog" if owner is None else "workspace's catalog"
        raise ConflictError(
            f"{image.reference} is already in the {namespace}; use the entry that is there",
            "$.reference",
        ) from None
    record_mutation(
        connection,
        principal.user_id,
        "ImageAdded",
        f"image {image.name} added",
        workspace_id=owner,
        data={"image_id": str(row.id), "reference": image.reference},
    )
    return row


def _owner_for_new(connection: Connection, principal: Principal, image: NewImage) -> uuid.UUID | None:
    """The workspace a new entry belongs to (None: public), once the caller may add it there."""
    if image.visibility is ImageVisibility.PRIVATE:
        if image.workspace is None:
            raise InvalidInputError("$.workspace", "a private image belongs to a workspace; name it")
        access = workspace_access(connection, principal, image.workspace)
        access.require(Action.MANAGE_IMAGES)
        return access.id
    if not principal.is_admin:
        raise ForbiddenError("only platform admins add public images; add it as private to your workspace")
    return None


def remove_image(connection: Connection, principal: Principal, image_id: uuid.UUID) -> None:
    """Remove a catalog entry the caller can see (NotFoundError otherwise): public ones need a platform
    admin, private ones an admin of the owner workspace. Running environments keep their image."""
    image = get_image(connection, principal, image_id)
    if not (principal.is_admin or _may_manage_private(connection, principal, image)):
        raise ForbiddenError(
            "only platform admins remove public images, and workspace admins their private ones"
        )
    connection.execute(text("DELETE FROM images WHERE id = :id"), {"id": image.id})
    record_mutation(
        connection,
        principal.user_id,
        "ImageRemoved",
        f"image {image.name} removed",
        workspace_id=image.owner_workspace_id,
        data={"image_id": str(image.id)},
    )


def _may_manage_private(connection: Connection, principal: Principal, image: Any) -> bool:
    if image.visibility != ImageVisibility.PRIVATE.value or image.owner_workspace_id is None:
        return False
    try:
        access = workspace_access(connection, principal, image.owner_workspace_id)
    except NotFoundError:
        return False
    return allows(access.role.value, Action.MANAGE_IMAGES)
