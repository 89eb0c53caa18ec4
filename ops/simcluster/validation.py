"""What the API server refuses in the workload, policy and RBAC kinds of a RemoteGPU deployment.

The simulated cluster only stores these kinds (nothing runs them), but a manifest the real API server
would refuse must be refused here too, with the same 422 `Invalid` shape, so `kubectl apply` against
the simulated cluster is evidence. The checks are the ones a hand-written deployment gets wrong: a
selector that does not match its pod template, a Job that restarts forever, a disruption budget with
both bounds, a binding without a role, a rule without verbs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from remotegpu.ops.simcluster.store import ApiError, Obj, Resource


def _invalid(resource: Resource, obj: Obj, causes: list[tuple[str, str]]) -> ApiError:
    name = obj.get("metadata", {}).get("name", "")
    qualified = f"{resource.kind}.{resource.group}" if resource.group else resource.kind
    detail = ", ".join(f"{field}: {message}" for field, message in causes)
    return ApiError(
        422,
        "Invalid",
        f'{qualified} "{name}" is invalid: {detail}',
        {
            "name": name,
            "group": resource.group,
            "kind": resource.kind,
            "causes": [
                {"reason": "FieldValueInvalid", "message": message, "field": field}
                for field, message in causes
            ],
        },
    )


def _pod_template(spec: Obj, causes: list[tuple[str, str]], *, job: bool = False) -> None:
    template = spec.get("template") or {}
    containers = (template.get("spec") or {}).get("containers") or []
    if not containers:
        causes.append(("spec.template.spec.containers", "Required value"))
    for index, container in enumerate(containers):
        if not container.get("image"):
            causes.append((f"spec.template.spec.containers[{index}].image", "Required value"))
    restart = (template.get("spec") or {}).get("restartPolicy", "Never" if job else "Always")
    allowed = {"Never", "OnFailure"} if job else {"Always"}
    if restart not in allowed:
        causes.append(
            (
                "spec.template.spec.restartPolicy",
                f'Unsupported value: "{restart}": supported values: {", ".join(sorted(allowed))}',
            )
        )


def _selected_template(obj: Obj) -> list[tuple[str, str]]:
    spec = obj.get("spec") or {}
    causes: list[tuple[str, str]] = []
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    if not selector:
        causes.append(("spec.selector", "Required value"))
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if selector and any(labels.get(key) != value for key, value in selector.items()):
        causes.append(
            (
                "spec.template.metadata.labels",
                f"Invalid value: {labels}: `selector` does not match template `labels`",
            )
        )
    _pod_template(spec, causes)
    return causes


def _job(obj: Obj) -> list[tuple[str, str]]:
    causes: list[tuple[str, str]] = []
    _pod_template(obj.get("spec") or {}, causes, job=True)
    return causes


def _disruption_budget(obj: Obj) -> list[tuple[str, str]]:
    spec = obj.get("spec") or {}
    if "minAvailable" in spec and "maxUnavailable" in spec:
        return [("spec", "Invalid value: minAvailable and maxUnavailable cannot be both set")]
    return []


def _rules(obj: Obj) -> list[tuple[str, str]]:
    causes: list[tuple[str, str]] = []
    for index, rule in enumerate(obj.get("rules") or []):
        if not rule.get("verbs"):
            causes.append((f"rules[{index}].verbs", "Required value: verbs must contain at least one value"))
        if "nonResourceURLs" not in rule and not rule.get("resources"):
            causes.append(
                (
                    f"rules[{index}].resources",
                    "Required value: resource rules must supply at least one resource",
                )
            )
    return causes


def _binding(obj: Obj) -> list[tuple[str, str]]:
    role = obj.get("roleRef") or {}
    return [(f"roleRef.{key}", "Required value") for key in ("kind", "name") if not role.get(key)]


def _cluster_binding(obj: Obj) -> list[tuple[str, str]]:
    """A cluster-wide binding cannot guess a service account's namespace."""
    causes = _binding(obj)
    for index, subject in enumerate(obj.get("subjects") or []):
        if subject.get("kind") == "ServiceAccount" and not subject.get("namespace"):
            causes.append((f"subjects[{index}].namespace", "Required value"))
    return causes


_CHECKS: dict[str, Callable[[Obj], list[tuple[str, str]]]] = {
    "deployments": _selected_template,
    "daemonsets": _selected_template,
    "jobs": _job,
    "poddisruptionbudgets": _disruption_budget,
    "roles": _rules,
    "clusterroles": _rules,
    "rolebindings": _binding,
    "clusterrolebindings": _cluster_binding,
}


def validate(resource: Resource, obj: Any) -> None:
    """Raise 422 `Invalid` naming every field at fault, as the API server does; kinds without checks pass."""
    check = _CHECKS.get(resource.plural)
    if check is None or not isinstance(obj, dict):
        return
    causes = check(obj)
    if causes:
        raise _invalid(resource, obj, causes)
