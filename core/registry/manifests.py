"""Manifest media types and what a manifest says about an image's size.

A registry answers a manifest request with one of the types in `ACCEPT` (OCI image manifest or index,
Docker v2 schema 2 manifest or manifest list); without them in `Accept`, Distribution rewrites a list to
one platform's manifest or answers an old schema 1 manifest, and the digest would not be the tag's.
An image's size is its config plus its layers (compressed, as pulled); an index's is its largest
platform manifest's, the most a node may pull for it.
"""

from __future__ import annotations

from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))


def media_type_of(manifest: dict[str, Any], content_type: str | None) -> str:
    """The manifest's media type: its `mediaType` field (optional in OCI), else the answer's type."""
    declared = manifest.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    return (content_type or "").split(";")[0].strip()


def image_size(manifest: dict[str, Any]) -> int | None:
    """Config plus layers of an image manifest; None when the manifest does not say (schema 1)."""
    config = manifest.get("config")
    layers = manifest.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, list):
        return None
    sizes = [config.get("size"), *(layer.get("size") for layer in layers if isinstance(layer, dict))]
    if len(sizes) != len(layers) + 1 or not all(isinstance(s, int) for s in sizes):
        return None
    return sum(s for s in sizes if isinstance(s, int))


def index_children(index: dict[str, Any]) -> list[str]:
    """The digests of an index's manifests (its platforms; attestations included, they are small)."""
    return [
        entry["digest"]
        for entry in index.get("manifests") or []
        if isinstance(entry, dict) and isinstance(entry.get("digest"), str)
    ]
