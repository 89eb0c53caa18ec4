"""The image registry of `remotegpu dev --registry harbor`: Harbor's contract fake with demo content,
configured as the registry `harbor-dev` (its `library` project public, `research` the workspace
`research`'s), its admin login in the secrets store, and the catalog synced once, so a newcomer sees
synced images in `remotegpu get images` and environments pinned to their digests."""

from __future__ import annotations

import contextlib
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL

from remotegpu.core.accounts.membership import create_workspace
from remotegpu.core.accounts.users import Principal
from remotegpu.core.catalog.sync import sync_catalog
from remotegpu.core.environments.states import UserRole
from remotegpu.core.platform.db import make_engine
from remotegpu.core.platform.settings import DevRegistryChoice, Settings
from remotegpu.core.registry.configured import RegistryDocument, put_registry
from remotegpu.core.registry.credentials import RegistryLogin, set_login
from remotegpu.core.registry.directory import RegistryDirectory
from remotegpu.core.registry.factory import default_client_factory
from remotegpu.core.secrets.configured import open_secret_store
from remotegpu.ops.fakes.harbor import FakeHarbor, seed_demo

RegistryChoice = DevRegistryChoice
DEV_REGISTRY = "harbor-dev"
DEV_WORKSPACE = "research"


def _harbor_on_its_port(remembered: Path) -> FakeHarbor:
    """The fake on the port it had last time (a restarted `dev` keeps its images' references and pins
    valid), else on a free one, remembered for next time."""
    port = 0
    with contextlib.suppress(OSError, ValueError):
        port = int(remembered.read_text())
    try:
        harbor = FakeHarbor(port=port)
    except OSError:  # taken meanwhile: a new one
        harbor = FakeHarbor()
    remembered.parent.mkdir(parents=True, exist_ok=True)
    remembered.write_text(str(harbor.url.rsplit(":", 1)[1].split("/")[0]))
    return harbor


def prepare_dev_registry(
    settings: Settings,
    choice: RegistryChoice,
    database_url: URL,
    admin_email: str,
    stack: contextlib.ExitStack,
) -> str:
    """Start and configure the registry of `choice` (stopped by `stack`); a line saying where it is."""
    if choice == "none":
        return "none (images run by tag; `remotegpu registry add` syncs one)"
    harbor = stack.enter_context(_harbor_on_its_port(settings.data_dir / "harbor-port"))
    seed_demo(harbor)
    engine = make_engine(database_url, pool_size=1)
    try:
        store = open_secret_store(settings, engine)
        with engine.begin() as connection:
            row = connection.execute(
                text("SELECT id, username, email FROM users WHERE email = :e"), {"e": admin_email}
            ).one()
            admin = Principal(row.id, row.username, row.email, UserRole.ADMIN)
            exists = connection.execute(
                text("SELECT 1 FROM workspaces WHERE name = :n AND deleted_at IS NULL"), {"n": DEV_WORKSPACE}
            ).scalar()
            if not exists:
                create_workspace(connection, admin, DEV_WORKSPACE, "Research (demo)")
            document = RegistryDocument("harbor", harbor.url, ["library"], {"research": DEV_WORKSPACE})
            config = put_registry(connection, admin, DEV_REGISTRY, document)
            set_login(connection, admin, store, config, RegistryLogin("admin", harbor.admin_password))
        (report,) = sync_catalog(engine, RegistryDirectory(engine, store, default_client_factory))
    finally:
        engine.dispose()
    return (
        f"harbor (the contract fake) at {harbor.url}: registry {DEV_REGISTRY}, project library public,"
        f" research in workspace {DEV_WORKSPACE}; {report.images} images synced"
    )
