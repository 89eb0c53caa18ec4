"""The OpenAPI v3 index `kubectl` reads to learn that the server validates fields itself.

`kubectl apply` (and `create`, `replace`) validates strictly by default: it asks `/openapi/v3` whether
each kind's PATCH accepts the `fieldValidation` query parameter and, when it does, leaves validation to
the server (`?fieldValidation=Strict`) instead of downloading every schema. So the simulated cluster
publishes, per group version, one PATCH operation per kind that names the parameter and the kind
(`x-kubernetes-group-version-kind`), and no schemas: field-level checks are the server's
(`validation.py`).
"""

from __future__ import annotations

import hashlib
import json

from remotegpu.ops.simcluster.store import RESOURCES, Obj, Resource

_FIELD_VALIDATION = {
    "name": "fieldValidation",
    "in": "query",
    "description": "How the server treats unknown or duplicate fields: Ignore, Warn or Strict.",
    "schema": {"type": "string", "uniqueItems": True},
}


def _prefix(resource: Resource) -> str:
    return f"apis/{resource.api_version}" if resource.group else "api/v1"


def _patch_path(resource: Resource) -> str:
    namespaced = "/namespaces/{namespace}" if resource.namespaced else ""
    return f"/{_prefix(resource)}{namespaced}/{resource.plural}/{{name}}"


def group_version_document(prefix: str) -> Obj | None:
    """The OpenAPI v3 document of one group version (`api/v1`, `apis/apps/v1`); None when unknown."""
    resources = [r for r in RESOURCES if _prefix(r) == prefix]
    if not resources:
        return None
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.31.0-remotegpu-sim"},
        "paths": {
            _patch_path(r): {
                "patch": {
                    "operationId": f"patch{r.kind}",
                    "parameters": [_FIELD_VALIDATION],
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {
                        "group": r.group,
                        "version": r.version,
                        "kind": r.kind,
                    },
                }
            }
            for r in resources
        },
    }


def index() -> Obj:
    """`/openapi/v3`: where each group version's document is, with a hash clients cache by."""
    prefixes = sorted({_prefix(r) for r in RESOURCES})
    paths = {}
    for prefix in prefixes:
        digest = hashlib.sha256(
            json.dumps(group_version_document(prefix), sort_keys=True).encode()
        ).hexdigest()
        paths[prefix] = {"serverRelativeURL": f"/openapi/v3/{prefix}?hash={digest[:32].upper()}"}
    return {"paths": paths}
