"""The API benchmark's ceiling: a bare app over the same query as the benchmark's list.

`serve_bare_worker` is one worker of the least an API can be and still answer the benchmark's list: a
Litestar app with one route, `GET /api/v1/environments?limit=N`, running the API's own list statement
(`list_environments_async`, the seeded owner's view, no workspace filter) on a psycopg pool of the size
the API uses, and answering the rows as JSON, under uvicorn on a SO_REUSEPORT socket as `remotegpu api`
runs (uvloop, httptools, start-up objects frozen out of the collector). No authentication, no response
structs, no middleware: what is left is HTTP, the pool and the query.
"""

from __future__ import annotations

import gc
import uuid

import msgspec
import uvicorn
from litestar import Litestar, MediaType, Response, get
from sqlalchemy.engine import make_url

from remotegpu.core.accounts.users import Principal
from remotegpu.core.environments.states import UserRole
from remotegpu.core.environments.views import EnvironmentFilter, list_environments_async
from remotegpu.core.platform.db import make_async_pool
from remotegpu.ops.api_server import bind

LIST_PATH = "/api/v1/environments"


def create_bare_app(url: str, user_id: uuid.UUID, pool_size: int) -> Litestar:
    """The bare list app on the database at `url`, listing as the user `user_id`."""
    pool = make_async_pool(make_url(url), size=pool_size)
    principal = Principal(user_id=user_id, username="bench", email="bench@example.org", role=UserRole.USER)
    everything = EnvironmentFilter()

    @get(LIST_PATH)
    async def list_environments(limit: int = 20) -> Response[bytes]:
        async with pool.connection() as connection:
            rows, _ = await list_environments_async(
                connection, principal, everything, limit=limit, cursor=None
            )
        return Response(msgspec.json.encode(rows), media_type=MediaType.JSON)

    async def open_pool() -> None:
        await pool.open(wait=True)
        gc.collect()
        gc.freeze()

    async def close_pool() -> None:
        await pool.close()

    return Litestar([list_environments], on_startup=[open_pool], on_shutdown=[close_pool])


def serve_bare_worker(port: int, url: str, user_id: uuid.UUID, pool_size: int) -> None:
    """One bare worker process (spawned); serves until terminated."""
    sock = bind("127.0.0.1", port, reuse_port=True)
    config = uvicorn.Config(
        create_bare_app(url, user_id, pool_size),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    uvicorn.Server(config).run(sockets=[sock])
