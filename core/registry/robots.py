"""Pull robots made through Harbor's API: a project's own pull login, created by RemoteGPU.

The registry's own login (an admin's, or a system robot allowed to create robots) asks Harbor for a
robot that may pull from one mapped project (`HarborClient.create_robot`); its secret goes straight
into the secrets store as that project's login, so its images are pulled with it (`pull_secret_for`).
Calling it again gives the robot a new secret (Harbor shows one only once), which replaces the stored
one: a crash between Harbor's answer and the store is repaired by calling again. No database session
is open during the Harbor call; the secret is never returned, logged or recorded.
"""

from __future__ import annotations

from sqlalchemy import Engine

from remotegpu.core.accounts.users import Principal
from remotegpu.core.platform.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    UpstreamUnavailableError,
)
from remotegpu.core.platform.events import record_mutation
from remotegpu.core.registry.client import ReferenceGoneError, RegistryAuthError, RegistryUnavailableError
from remotegpu.core.registry.configured import get_registry
from remotegpu.core.registry.credentials import RegistryLogin, login_path, read_login, registry_login_path
from remotegpu.core.registry.directory import ClientFactory
from remotegpu.core.registry.harbor import HarborClient
from remotegpu.core.secrets.store import SecretStore

DEFAULT_ROBOT = "remotegpu-pull"


def create_project_robot(
    engine: Engine,
    principal: Principal,
    store: SecretStore,
    factory: ClientFactory,
    registry: str,
    project: str,
    name: str = DEFAULT_ROBOT,
) -> str:
    """Make (or refresh) the pull robot of `project` at Harbor `registry` and store it as the project's
    login (platform admins). Returns the robot's full name, never its secret."""
    principal.require_admin()
    with engine.connect() as connection:
        config = get_registry(connection, registry)
    if config.kind != "harbor":
        raise InvalidInputError("registry", f"{registry} is an {config.kind} registry; robots are Harbor's")
    path = login_path(config, project)  # NotFoundError unless the project is mapped
    if "/" in project:
        raise InvalidInputError(
            "$.project", "a robot pulls from one Harbor project: name the project, not a repository"
        )
    client = factory(config, read_login(store, registry_login_path(config.id)))
    try:
        if not isinstance(client, HarborClient):
            raise InvalidInputError("registry", f"{registry} has no Harbor client to make robots with")
        try:
            robot = client.create_robot(project, name)
        except ValueError as error:
            raise InvalidInputError("$.name", str(error)) from None
        except ReferenceGoneError:
            raise NotFoundError(f"Harbor {registry} has no project {project!r}") from None
        except RegistryAuthError as error:  # messages name the registry and call, never a credential
            raise ConflictError(
                f"{error}; store a login that may create robots: `remotegpu registry login {registry}`"
            ) from None
        except RegistryUnavailableError as error:
            raise UpstreamUnavailableError(str(error)) from None
    finally:
        client.close()
    store.put(path, RegistryLogin(robot.username, robot.password).encoded())
    with engine.begin() as connection:
        record_mutation(
            connection,
            principal.user_id,
            "RegistryRobotCreated",
            f"pull robot {robot.username} of registry {registry} project {project} stored",
            data={"registry": registry, "project": project, "robot": robot.username},
        )
    return robot.username
