"""The image catalog as users read it: public images plus the private images of their workspaces.

A spec's `image` may be a catalog name (resolved here to the full reference) or a full reference.
References the catalog does not know pass through: any OCI registry may be used directly.

Each workspace's private entries are a namespace of their own, beside the one public namespace: a
reference is unique within its namespace only, so two workspaces may each hold the same one. To
everyone outside it, another workspace's private entry is exactly an entry that does not exist: adding
the same reference succeeds, and naming it in a spec behaves as an unknown name or reference does.
Adding and removing entries, with who may do it, is `core.catalog.control`.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, text

from remotegpu.core.accounts.users import Principal
from remotegpu.core.platform.errors import InvalidInputError, NotFoundError
from remotegpu.core.platform.pagination import decode_cursor, page

IMAGE_COLUMNS = (
    "i.id, i.name, i.registry_host, i.repository, i.tag, i.digest, i.framework, i.cuda_version, i.size_bytes,"
    " i.visibility, i.owner_workspace_id, i.source, i.created_at, i.labels, i.pushed_at, i.synced_at, i.gone_at,"
    " (SELECT r.name FROM registries r WHERE r.id = i.registry_id) AS registry"
)
_VISIBLE = (
    "(:admin OR i.visibility = 'public' OR EXISTS (SELECT 1 FROM workspace_members m"
    " WHERE m.workspace_id = i.owner_workspace_id AND m.user_id = :user))"
)


def split_reference(reference: str) -> tuple[str, str, str]:
    """`registry/repo/path:tag` → (registry, repository, tag); Docker Hub and `latest` when left out."""
    if "@" in reference:
        raise InvalidInputError("$.reference", "give a tag (repo:tag); pin digests with the `digest` field")
    first, _, rest = reference.partition("/")
    registry, path = (
        (first, rest)
        if rest and ("." in first or ":" in first or first == "localhost")
        else ("docker.io", reference)
    )
    repository, _, tag = path.rpartition(":") if ":" in path else (path, "", "latest")
    if not repository or not tag or any(c.isspace() for c in reference):
        raise InvalidInputError(
            "$.reference", f"{reference!r} is not an image reference; write registry/repository:tag"
        )
    return registry, repository, tag


def full_reference(row: Any) -> str:
    """The pullable reference of a catalog row."""
    return f"{row.registry_host}/{row.repository}:{row.tag}"


def list_images(
    connection: Connection,
    principal: Principal,
    *,
    query: str | None,
    limit: int,
    cursor: str | None,
    include_gone: bool = False,
) -> tuple[list[Any], str | None]:
    """Visible images by name (then id), optionally matching `query` in name, repository or framework;
    entries gone from their registry only with `include_gone`."""
    after = decode_cursor(cursor, (str, uuid.UUID))
    rows = list(
        connection.execute(
            text(
                f"SELECT {IMAGE_COLUMNS} FROM images i WHERE {_VISIBLE}"
                " AND (:include_gone OR i.gone_at IS NULL)"
                " AND (CAST(:query AS text) IS NULL OR i.name ILIKE :pattern OR i.repository ILIKE :pattern"
                "      OR i.framework ILIKE :pattern)"
                " AND (CAST(:after_name AS text) IS NULL"
                "      OR (i.name, i.id) > (CAST(:after_name AS text), CAST(:after_id AS uuid)))"
                " ORDER BY i.name, i.id LIMIT :limit"
            ),
            {
                "user": principal.user_id,
                "admin": principal.is_admin,
                "query": query,
                "pattern": f"%{_escape_like(query or '')}%",
                "after_name": after[0] if after else None,
                "after_id": after[1] if after else None,
                "limit": limit + 1,
                "include_gone": include_gone,
            },
        )
    )
    return page(rows, limit, lambda row: (row.name, row.id))


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def get_image(connection: Connection, principal: Principal, image_id: uuid.UUID) -> Any:
    """A visible image; NotFoundError otherwise."""
    row = connection.execute(
        text(f"SELECT {IMAGE_COLUMNS} FROM images i WHERE i.id = :id AND {_VISIBLE}"),
        {"id": image_id, "user": principal.user_id, "admin": principal.is_admin},
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"image {image_id} not found")
    return row


class ImageGoneError(InvalidInputError):
    """The catalog entry a spec names was removed from its registry; `reference` is its full reference."""

    def __init__(self, reference: str, message: str) -> None:
        super().__init__("$.image", message)
        self.reference = reference


_KNOWN_TAGS = 5
"""How many known tags an unknown-tag error lists."""


def resolve_image(connection: Connection, workspace_id: uuid.UUID, image: str) -> str:
    """The reference a spec's `image` stands for in `workspace_id`: an entry the workspace can see (its
    own private one before a public one), else `image` itself when it is a full reference of a registry
    the platform does not sync; NotFoundError for a bare name the workspace cannot see. Other
    workspaces' private entries play no part, so naming one reads exactly as naming something the
    catalog does not hold.

    The synced catalog is the authority for configured registries (no registry call here): an entry
    removed upstream is `ImageGoneError`, and a reference at a configured registry that the catalog does
    not hold is `InvalidInputError` naming `$.image`, with a few tags the repository does have."""
    row = connection.execute(
        text(
            "SELECT i.registry_host, i.repository, i.tag, i.gone_at, r.name AS registry FROM images i"
            " LEFT JOIN registries r ON r.id = i.registry_id"
            " WHERE (i.visibility = 'public' OR (i.visibility = 'private' AND i.owner_workspace_id = :workspace))"
            "   AND (i.name = :image OR (i.registry_host || '/' || i.repository || ':' || i.tag) = :image"
            "        OR (i.registry_host = 'docker.io' AND (i.repository || ':' || i.tag) = :image))"
            " ORDER BY i.gone_at IS NULL DESC, i.visibility = 'private' DESC, i.created_at, i.id LIMIT 1"
        ),
        {"image": image, "workspace": workspace_id},
    ).one_or_none()
    if row is not None:
        reference = full_reference(row)
        if row.gone_at is not None:
            raise ImageGoneError(
                reference,
                f"{reference} was removed from its registry{f' {row.registry}' if row.registry else ''}"
                f" (gone since {row.gone_at:%Y-%m-%d %H:%M} UTC);"
                f" {_other_tags(connection, workspace_id, row.registry_host, row.repository)}",
            )
        return reference
    if "/" not in image and ":" not in image:
        raise NotFoundError(
            f"image {image!r} not found in the catalog of this workspace; see `remotegpu get images`,"
            " or write a full reference such as docker.io/library/ubuntu:24.04"
        )
    _check_configured_registry(connection, workspace_id, image)
    return image


def _check_configured_registry(connection: Connection, workspace_id: uuid.UUID, image: str) -> None:
    """A reference at a configured registry must be in its synced catalog; one elsewhere passes."""
    if "@" in image:
        return  # a digest names exactly one manifest: nothing to check against tags
    try:
        host, repository, tag = split_reference(image)
    except InvalidInputError:
        raise InvalidInputError(
            "$.image", f"{image!r} is not an image reference; write registry/repository:tag"
        ) from None
    registry = connection.execute(
        text("SELECT name, last_synced_at FROM registries WHERE host = :host"), {"host": host}
    ).one_or_none()
    if registry is None:
        return
    raise InvalidInputError(
        "$.image",
        f"{host}/{repository}:{tag} is not in the catalog of registry {registry.name};"
        f" {_other_tags(connection, workspace_id, host, repository)}",
    )


def _other_tags(connection: Connection, workspace_id: uuid.UUID, host: str, repository: str) -> str:
    """A sentence naming a few tags of the repository the workspace may use, newest first."""
    tags = list(
        connection.execute(
            text(
                "SELECT i.tag FROM images i WHERE i.registry_host = :host AND i.repository = :repository"
                " AND i.gone_at IS NULL"
                " AND (i.visibility = 'public' OR (i.visibility = 'private' AND i.owner_workspace_id = :workspace))"
                " ORDER BY i.pushed_at DESC NULLS LAST, i.tag LIMIT :limit"
            ),
            {"host": host, "repository": repository, "workspace": workspace_id, "limit": _KNOWN_TAGS + 1},
        ).scalars()
    )
    if not tags:
        return (
            f"the catalog knows no tag of {host}/{repository}; check the name, or push it and run"
            " `remotegpu images sync`"
        )
    shown = ", ".join(tags[:_KNOWN_TAGS]) + (", …" if len(tags) > _KNOWN_TAGS else "")
    return f"known tags of {host}/{repository}: {shown}"
