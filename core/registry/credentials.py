"""Credentials per configured registry, and per project of one, in the secrets store.

A registry's login (`registry-<id>` in the platform scope) is what the catalog sync and the pinning step
read it with, and what namespaces pull its images with. A project may have a login of its own
(`registry-project-<id>`: e.g. a Harbor robot account limited to that project); its images are pulled
with it instead. Each login becomes a pull Secret of its own in every namespace that runs an image from
there (`pull_secret_for`), whose Docker config names the registry host — or `host/project` for a
project's login, which the kubelet matches by path prefix.

Values are written, never read back through the API; errors and events name the registry, never a
username's password.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass

from sqlalchemy import Connection

from remotegpu.core.accounts.users import Principal
from remotegpu.core.platform.errors import InvalidInputError, NotFoundError
from remotegpu.core.platform.events import record_mutation
from remotegpu.core.registry.configured import ProjectMapping, RegistryConfig
from remotegpu.core.secrets.store import PLATFORM, SecretNotFoundError, SecretPath, SecretStore


@dataclass(frozen=True)
class RegistryLogin:
    """A username and its password (or a robot account's secret)."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"RegistryLogin(username={self.username!r}, password=***)"

    def encoded(self) -> str:
        return json.dumps({"username": self.username, "password": self.password})


def registry_login_path(registry_id: uuid.UUID) -> SecretPath:
    """Where a registry's own login is kept."""
    return SecretPath(PLATFORM, f"registry-{registry_id}")


def project_login_path(project_id: uuid.UUID) -> SecretPath:
    """Where one project's login is kept."""
    return SecretPath(PLATFORM, f"registry-project-{project_id}")


def read_login(store: SecretStore, path: SecretPath) -> RegistryLogin | None:
    """The login stored at `path`, or None."""
    try:
        value = store.get(path)
    except SecretNotFoundError:
        return None
    data = json.loads(value.decode() if isinstance(value, bytes) else value)
    return RegistryLogin(str(data["username"]), str(data["password"]))


def _project(config: RegistryConfig, path: str) -> ProjectMapping:
    for mapping in config.projects:
        if mapping.path == path:
            return mapping
    raise NotFoundError(
        f"registry {config.name} maps no project {path!r}; add it first (`remotegpu registry add`)"
    )


def login_path(config: RegistryConfig, project: str | None) -> SecretPath:
    """The path of the registry's login, or of one of its mapped projects'."""
    return (
        registry_login_path(config.id)
        if project is None
        else project_login_path(_project(config, project).id)
    )


def set_login(
    connection: Connection,
    principal: Principal,
    store: SecretStore,
    config: RegistryConfig,
    login: RegistryLogin,
    *,
    project: str | None = None,
) -> None:
    """Store the login of a registry or of one of its projects (platform admins); the audit event names
    the registry, the project and the username, never the password."""
    principal.require_admin()
    if not login.username or not login.password:
        raise InvalidInputError("$.password", "give both a username and a password (or robot secret)")
    store.put(login_path(config, project), login.encoded())
    record_mutation(
        connection,
        principal.user_id,
        "RegistryLoginSet",
        f"login for registry {config.name}{f' project {project}' if project else ''} set ({login.username})",
        data={"registry": config.name, "project": project, "username": login.username},
    )


def remove_login(
    connection: Connection,
    principal: Principal,
    store: SecretStore,
    config: RegistryConfig,
    *,
    project: str | None,
) -> bool:
    """Forget a login (platform admins); idempotent: whether there was one."""
    principal.require_admin()
    removed = store.delete(login_path(config, project))
    if removed:
        record_mutation(
            connection,
            principal.user_id,
            "RegistryLoginRemoved",
            f"login for registry {config.name}{f' project {project}' if project else ''} removed",
            data={"registry": config.name, "project": project},
        )
    return removed


@dataclass(frozen=True)
class PullSecret:
    """A `kubernetes.io/dockerconfigjson` Secret for one login: its object name and its content."""

    name: str
    docker_config_json: str

    def __repr__(self) -> str:
        return f"PullSecret(name={self.name!r})"


def pull_secret_for(store: SecretStore, config: RegistryConfig, repository: str) -> PullSecret | None:
    """The pull Secret an image of `repository` at this registry needs: its project's login when that
    project has one, else the registry's; None when neither has one."""
    mapping = config.mapping_for(repository)
    if mapping is not None:
        login = read_login(store, project_login_path(mapping.id))
        if login is not None:
            name = f"remotegpu-pull-{config.name}-{mapping.id.hex[:12]}"
            return PullSecret(name, _docker_config(f"{config.host}/{mapping.path}", login))
    login = read_login(store, registry_login_path(config.id))
    if login is None:
        return None
    return PullSecret(f"remotegpu-pull-{config.name}", _docker_config(config.host, login))


def _docker_config(key: str, login: RegistryLogin) -> str:
    auth = base64.b64encode(f"{login.username}:{login.password}".encode()).decode()
    return json.dumps({"auths": {key: {"auth": auth}}}, sort_keys=True, separators=(",", ":"))
