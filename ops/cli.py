"""The `remotegpu` command line.

Expected failures (`RemoteGPUError`) print one readable line on stderr and exit with status 1; anything
else is a bug and keeps its traceback. Server-side modules (the dev stack, the reconciler, migrations)
are imported inside their commands, so the everyday client commands start quickly.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperArgument, TyperOption

try:  # typer 0.29 carries its own copy of click, and raises that copy's exceptions
    from typer._click import exceptions as click_exceptions
except ImportError:  # older typer: click itself
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.core.platform.settings import SecretsBackend, Settings, load_settings
from remotegpu.ops.client_cli import register_commands
from remotegpu.ops.log_format import console_handler
from remotegpu.ops.secrets_commands import secrets_app

app = typer.Typer(
    name="remotegpu",
    help="RemoteGPU: a self-hosted GPU cloud on your own Kubernetes cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",  # docstrings as written: `code`, line breaks joined (rich mode keeps them)
)
db_app = typer.Typer(help="Database schema: migrate and inspect.", no_args_is_help=True)
app.add_typer(db_app, name="db")
register_commands(app)
app.add_typer(secrets_app, name="secrets")

console = Console()
err_console = Console(stderr=True)

SERVER_COMMANDS = frozenset({"dev", "api", "reconciler", "simcluster", "bench", "db", "users", "secrets"})
"""Commands that run or administer a server (they need its database or cluster); the rest talk to the API.
`--help` lists them in two panels."""


def _installed_version() -> str:
    return package_version("remotegpu")


def _print_version(wanted: bool) -> None:
    if wanted:
        console.print(f"remotegpu {_installed_version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the installed version and exit."
        ),
    ] = False,
) -> None:
    """RemoteGPU: a self-hosted GPU cloud on your own Kubernetes cluster."""


ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML settings file (else $REMOTEGPU_CONFIG).")
]


def _settings(config: Path | None) -> Settings:
    settings = load_settings(config_file=config)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(message)s",
        handlers=[console_handler(err_console)],
    )
    # Third-party chatter (pgserver's command lines, Alembic's context lines) only at debug level.
    for noisy in ("pgserver", "alembic", "apscheduler", "transitions", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if settings.log_level == "debug" else logging.WARNING)
    return settings


@app.command()
def version() -> None:
    """Print the installed RemoteGPU version."""
    console.print(f"remotegpu {_installed_version()}", highlight=False)


HostOption = Annotated[
    str | None,
    typer.Option("--host", metavar="HOST", help="Address the API listens on (default: api_host, 127.0.0.1)."),
]
PortOption = Annotated[
    int | None,
    typer.Option(
        "--port", metavar="PORT", min=1, max=65535, help="Port the API listens on (default: api_port, 8080)."
    ),
]
_API_PORT_FLAG = "--port or REMOTEGPU_API_PORT"
_API_HOST_FLAG = "--host or REMOTEGPU_API_HOST"


def _api_address(settings: Settings, host: str | None, port: int | None) -> Settings:
    """The settings with the API address of the command line, checked free before anything starts."""
    import msgspec

    from remotegpu.ops.ports import check_port_free

    settings = msgspec.structs.replace(
        settings,
        api_host=settings.api_host if host is None else host,
        api_port=settings.api_port if port is None else port,
    )
    check_port_free(settings.api_host, settings.api_port, port_flag=_API_PORT_FLAG, host_flag=_API_HOST_FLAG)
    return settings


@app.command()
def dev(
    config: ConfigOption = None,
    host: HostOption = None,
    port: PortOption = None,
    secrets: Annotated[
        SecretsBackend | None,
        typer.Option(
            "--secrets", help="Secrets store: builtin, or vault (a fake Vault unless vault_url is set)."
        ),
    ] = None,
) -> None:
    """Run all of RemoteGPU on this machine until Ctrl-C: Postgres (embedded unless DATABASE_URL is set)
    with the schema migrated, a simulated GPU cluster (with a kubeconfig for kubectl), a reconciler and the
    API; a platform admin is created on first start (its password is in .remotegpu/admin-password)."""
    from remotegpu.ops.stopping import stopped_by_signals, wait_for_stop

    with stopped_by_signals():
        settings = _api_address(_settings(config), host, port)
        if secrets is not None:
            import msgspec

            settings = msgspec.structs.replace(settings, secrets_backend=secrets)
        from remotegpu.ops.devstack import running_dev_stack  # after the port check: a large import

        with running_dev_stack(settings) as stack:
            table = Table(title="RemoteGPU dev stack", show_header=True)
            table.add_column("component")
            table.add_column("where", overflow="fold")
            for component, where in stack.describe():
                table.add_row(component, where)
            console.print(table)
            console.print("Ready. Press Ctrl-C to stop.", highlight=False)
            try:
                wait_for_stop()
            finally:
                console.print("Stopping…")
    console.print("Stopped.")


@app.command()
def api(
    config: ConfigOption = None,
    host: HostOption = None,
    port: PortOption = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes sharing the port (one per core).")
    ] = 1,
) -> None:
    """Serve the REST API on api_host:api_port until Ctrl-C (needs database_url and jwt_secret)."""
    from remotegpu.ops.stopping import stopped_by_signals

    with stopped_by_signals():
        settings = _api_address(_settings(config), host, port)
        _required_database_url(settings)
        if settings.jwt_secret is None:
            raise RemoteGPUError(
                "jwt_secret is not set: export REMOTEGPU_JWT_SECRET=$(openssl rand -base64 48)"
            )
        from remotegpu.ops.api_server import serve_workers

        console.print(
            f"API on http://{settings.api_host}:{settings.api_port}/api/v1"
            f" ({workers} worker{'s' if workers > 1 else ''})",
            highlight=False,
        )
        serve_workers(settings, workers)
    console.print("Stopped.")


users_app = typer.Typer(
    help="Accounts, straight in the database (bootstrap the first admin).", no_args_is_help=True
)
app.add_typer(users_app, name="users")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="E-mail address.")],
    username: Annotated[str, typer.Argument(help="User name.")],
    admin: Annotated[bool, typer.Option("--admin", help="Make a platform administrator.")] = False,
    config: ConfigOption = None,
) -> None:
    """Create an account with a password read from stdin (the way to make the first platform admin)."""
    settings = _settings(config)
    url = _required_database_url(settings)
    from remotegpu.core.accounts.users import register_user
    from remotegpu.core.environments.states import UserRole
    from remotegpu.core.platform.db import make_engine

    password = sys.stdin.readline().rstrip("\n")
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as connection:
            role = UserRole.ADMIN if admin else UserRole.USER
            user = register_user(connection, email=email, username=username, password=password, role=role)
    finally:
        engine.dispose()
    console.print(f"created {user.role.value} {user.username} <{user.email}>", highlight=False)


@app.command()
def reconciler(
    config: ConfigOption = None,
    identity: Annotated[str | None, typer.Option(help="Name of this replica (default: host-random).")] = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(help="Cluster to drive (default: in-cluster config, else the in-memory cluster)."),
    ] = None,
) -> None:
    """Run one reconciler replica (leader or hot standby) until Ctrl-C."""
    from sqlalchemy.engine import make_url

    from remotegpu.core.cluster.kubernetes import KubernetesCluster
    from remotegpu.ops.reconciler_runner import driver_options, running_reconciler
    from remotegpu.ops.stopping import stopped_by_signals, wait_for_stop

    with stopped_by_signals():
        settings = _settings(config)
        url = _required_database_url(settings)
        driver = (
            KubernetesCluster.from_kubeconfig(str(kubeconfig), **driver_options(settings))
            if kubeconfig
            else None
        )
        where = f"cluster of {kubeconfig}" if kubeconfig else "in-memory cluster"
        with running_reconciler(make_url(url), settings, driver, identity=identity) as replica:
            console.print(f"Reconciler {replica.identity} running ({where}). Press Ctrl-C to stop.")
            wait_for_stop()
    console.print("Stopped.")


@app.command()
def simcluster(
    nodes: Annotated[int, typer.Option(min=1, help="Number of GPU nodes.")] = 8,
    gpus_per_node: Annotated[int, typer.Option(min=0, help="GPUs on each node.")] = 8,
    model: Annotated[str, typer.Option(help="GPU model (nvidia.com/gpu.product).")] = "H100",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free).")] = 0,
    start_delay: Annotated[float, typer.Option(min=0, help="Seconds from pod admission to Running.")] = 1.0,
    kubeconfig: Annotated[
        Path,
        typer.Option(
            help="Where to write the kubeconfig (default: simcluster.kubeconfig in the .remotegpu folder).",
            show_default=False,
        ),
    ] = Path(".remotegpu/simcluster.kubeconfig"),
    fail_pulls: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-pulls",
            metavar="IMAGE",
            help="An image (or repository) whose pulls fail, as do those whose name contains"
            " `does-not-exist`; repeatable.",
        ),
    ] = None,
) -> None:
    """Run a simulated Kubernetes cluster with GPU nodes until Ctrl-C; prints its kubeconfig path."""
    import datetime as dt

    from remotegpu.ops.ports import check_port_free
    from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster
    from remotegpu.ops.stopping import stopped_by_signals, wait_for_stop

    with stopped_by_signals():
        if port:
            check_port_free("127.0.0.1", port, port_flag="--port (0: any free port)")
        template = NodeTemplate(count=nodes, gpus=gpus_per_node, model=model)
        with SimulatedCluster(
            template,
            start_delay=dt.timedelta(seconds=start_delay),
            port=port,
            failing_images=fail_pulls or (),
        ) as cluster:
            path = cluster.write_kubeconfig(kubeconfig).resolve()
            console.print(f"Simulated cluster at {cluster.url}: {nodes} nodes × {gpus_per_node} {model}")
            console.print(f"kubeconfig: {path}", highlight=False, soft_wrap=True)
            console.print(f"Try: kubectl --kubeconfig {path} get nodes", highlight=False, soft_wrap=True)
            wait_for_stop()
    console.print("Stopped.")


@app.command()
def bench(
    name: Annotated[str, typer.Argument(help="Benchmark to run: allocation, reconcile or api.")],
    quick: Annotated[bool, typer.Option("--quick", help="A short run (under 30 s).")] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="allocation: contending processes; api: API worker processes."),
    ] = None,
    envs: Annotated[
        int | None, typer.Option("--envs", min=1, help="reconcile: environments to submit.")
    ] = None,
    cluster: Annotated[
        str, typer.Option("--cluster", help="reconcile: memory or sim (over HTTP).")
    ] = "memory",
    nodes: Annotated[int, typer.Option("--nodes", min=1, help="reconcile --cluster sim: node count.")] = 500,
    rate: Annotated[
        float | None, typer.Option("--rate", min=1, help="api: offered requests per second.")
    ] = None,
) -> None:
    """Run a benchmark: a table, then one JSON line of figures."""
    if name == "allocation":
        from remotegpu.ops.bench import allocation

        allocation.main(quick, workers)
    elif name == "reconcile":
        from remotegpu.ops.bench import reconcile

        if cluster not in {"memory", "sim"}:
            raise RemoteGPUError(f"--cluster: {cluster!r} is not a cluster; choose memory or sim")
        reconcile.main(quick, envs, cluster, nodes)
    elif name == "api":
        from remotegpu.ops.bench import api as api_bench

        api_bench.main(quick, rate, workers)
    else:
        raise RemoteGPUError(f"unknown benchmark {name!r}; choose one of: allocation, reconcile, api")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    config: ConfigOption = None,
) -> None:
    """Migrate the configured database (DATABASE_URL) to the latest schema."""
    from remotegpu.ops import migrate

    url = _required_database_url(_settings(config))
    migrate.upgrade(url, revision)
    console.print(f"Database at revision {migrate.current_revision(url)}.")


@db_app.command("current")
def db_current(config: ConfigOption = None) -> None:
    """Print the schema revision of the configured database."""
    from remotegpu.ops import migrate

    url = _required_database_url(_settings(config))
    console.print(migrate.current_revision(url) or "empty (never migrated)")


def _required_database_url(settings: Settings) -> str:
    if not settings.database_url:
        raise RemoteGPUError(
            "database_url is not set: export DATABASE_URL=postgresql://USER@HOST:PORT/DBNAME"
        )
    from remotegpu.ops.postgres import ensure_database

    ensure_database(settings.database_url)
    return settings.database_url


def _group_commands_in_help() -> None:
    for command in app.registered_commands:
        name = command.name or (command.callback.__name__ if command.callback else "")
        command.rich_help_panel = "Server" if name in SERVER_COMMANDS else "Client"
    for group in app.registered_groups:
        group.rich_help_panel = "Server" if group.name in SERVER_COMMANDS else "Client"


def _value_placeholder(param: Any, ctx: Any) -> str | None:
    """Click's words for an option's value in `--help` (PATH, TEXT, INTEGER, a list of choices), nothing
    for a flag, instead of the Python types typer 0.2x shows (`<list[Path]>`, `<str>`, and `<bool>` even for
    `--help`)."""
    if isinstance(param, TyperOption):
        if param.metavar is not None:
            return str(param.metavar)
        if param.is_flag:
            return None
    label = str(param.display_type(ctx)).strip("<>").removesuffix(" range")
    label = label.removeprefix("list[").removesuffix("]")
    return _CLICK_TYPE_NAMES.get(label, label)


_CLICK_TYPE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "Path": "PATH"}


def _argument_placeholder(argument: TyperArgument) -> str:
    """An argument as usage lines and errors name it: its metavar, else its name in capitals (`NAME`)."""
    return argument.metavar or (argument.name or "").upper()


def _argument_usage(argument: TyperArgument, ctx: Any) -> list[str]:
    """Click's usage words (`NAME`, `[NAMES]...`) instead of typer 0.29's `{name}`, which reads as a
    Python format placeholder."""
    shown = _argument_placeholder(argument)
    if not argument.required:
        shown = f"[{shown}]"
    return [f"{shown}..." if argument.nargs != 1 else shown]


def _argument_error_hint(argument: TyperArgument, *_: Any) -> str:
    return f"'{_argument_placeholder(argument)}'"


for _parameter_class in (TyperOption, TyperArgument):
    if hasattr(_parameter_class, "display_type_rich"):  # typer >= 0.2x; older versions print click's words
        _parameter_class.display_type_rich = _value_placeholder  # type: ignore[method-assign,assignment]
TyperArgument.get_usage_pieces = _argument_usage  # type: ignore[method-assign,assignment]
TyperArgument.get_error_hint = _argument_error_hint  # type: ignore[method-assign,assignment]


def main() -> None:
    """Console-script entry point: expected failures, and a command line that does not parse, are one
    line on stderr (exit 1, and 2 for bad usage as click has it) instead of click's boxed usage text."""
    try:
        status = app(standalone_mode=False)
    except RemoteGPUError as error:
        _fail(str(error), 1)
    except click_exceptions.UsageError as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # typer has printed the help already
            sys.exit(error.exit_code)
        hint = f" (see {error.ctx.command_path} --help)" if error.ctx is not None else ""
        _fail(error.format_message() + hint, error.exit_code)
    except click_exceptions.ClickException as error:
        _fail(error.format_message(), error.exit_code)
    except typer.Abort:  # end of input or Ctrl-C at a prompt
        _fail("aborted", 1)
    sys.exit(status if isinstance(status, int) else 0)


def _fail(message: str, status: int) -> NoReturn:
    err_console.print(f"error: {' '.join(message.split())}", highlight=False, markup=False, soft_wrap=True)
    sys.exit(status)


_group_commands_in_help()

if __name__ == "__main__":
    main()
