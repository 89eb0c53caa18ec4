"""`remotegpu api`: serve the REST API; and the `--host`/`--port` options `dev` shares with it."""

from __future__ import annotations

from typing import Annotated

import typer

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.core.platform.settings import Settings
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.cli.server.config import (
    ConfigOption,
    LogFormatOption,
    required_database_url,
    server_settings,
)

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


def api_address(settings: Settings, host: str | None, port: int | None) -> Settings:
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


def api(
    config: ConfigOption = None,
    log_format: LogFormatOption = None,
    host: HostOption = None,
    port: PortOption = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes sharing the port (one per core).")
    ] = 1,
) -> None:
    """Serve the REST API on api_host:api_port until Ctrl-C (needs database_url and jwt_secret)."""
    from remotegpu.ops.stopping import stopped_by_signals

    with stopped_by_signals():
        settings = api_address(
            server_settings(config, log_format=log_format, default_format="json"), host, port
        )
        required_database_url(settings)
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
        serve_workers(settings, workers, config)
    console.print("Stopped.")
