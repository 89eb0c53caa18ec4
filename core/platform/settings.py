"""Settings in one place: defaults, then an optional TOML file, then `REMOTEGPU_*` environment variables.

`DATABASE_URL` is honoured as the conventional name for `REMOTEGPU_DATABASE_URL`. Unknown keys and
unknown `REMOTEGPU_*` variables are errors, so a typo never silently falls back to a default. Secrets
(the database password, the JWT key) never appear in `repr()` or in `describe()`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from remotegpu.core.platform.errors import SettingsError

ENV_PREFIX = "REMOTEGPU_"
CONFIG_FILE_VARIABLE = "REMOTEGPU_CONFIG"
_SECRET_FIELDS = frozenset(
    {
        "jwt_secret",
        "registry_credentials",
        "token",
        "secrets_key",
        "vault_token",
        "vault_role_id",
        "vault_secret_id",
    }
)
_REDACTED = "**********"
MAX_SHARDS = 64
"""At most this many reconciler shards: each costs a leader connection and a worker pool per process."""

LogLevel = Literal["debug", "info", "warning", "error"]
SecretsBackend = Literal["builtin", "vault"]
VaultAuth = Literal["token", "approle"]
GatewayChoice = Literal["direct", "guacamole", "jumpserver"]
GpuBinding = Literal["device-plugin", "device-id"]
BillingPeriod = Literal["month", "week", "day"]
DatasetStorageChoice = Literal["local", "s3"]
DevRegistryChoice = Literal["none", "harbor"]
DevS3Choice = Literal["none", "moto"]
"""`remotegpu dev --s3`: no S3 service, or moto's S3 server on loopback for datasets."""
"""`remotegpu dev --registry`: no registry, or Harbor's contract fake with demo images."""


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Every tunable of a RemoteGPU process."""

    database_url: str | None = None
    """SQLAlchemy URL of the Postgres to use; None starts an embedded one (development and tests)."""
    data_dir: Path = Path(".remotegpu")
    """Where `remotegpu dev` keeps its embedded Postgres data and other local state."""
    api_host: str = "127.0.0.1"
    """Interface the API listens on."""
    api_port: int = 8080
    """Port the API listens on."""
    drain_seconds: float = 10.0
    """On SIGTERM an API process refuses new requests (503, `Retry-After`) and lets those in flight
    finish for up to this long before it stops."""
    cors_origins: list[str] = msgspec.field(default_factory=list)
    """Web origins (scheme://host[:port]) whose pages may call the API from a browser, with credentials;
    none by default (the web console is same-origin and needs none)."""
    reconciler_metrics_host: str = "127.0.0.1"
    """Interface the reconciler serves its Prometheus `/metrics` on (0.0.0.0 for a scraper elsewhere)."""
    reconciler_metrics_port: int | None = 9465
    """Port of the reconciler's `/metrics` (None: not served; 0: any free port; `remotegpu dev` uses any)."""
    jwt_secret: str | None = None
    """Key that signs access tokens; `remotegpu dev` generates one when unset."""
    access_token_minutes: int = 15
    """Lifetime of the access tokens `POST /auth/login` returns."""
    refresh_token_hours: int = 168
    """Lifetime of refresh tokens (sign in again after this)."""
    password_reset_hours: int = 24
    """How long a password reset token a platform admin issues stays redeemable (it works once)."""
    login_attempts_per_minute: int = 10
    """Sign-in attempts one client address may make per minute; more get HTTP 429."""
    login_failures_per_account_per_hour: int = 20
    """Sign-in attempts at one account from one client address per hour until one succeeds; more get
    HTTP 429 (per address too, so a stranger cannot lock the owner out: see `core.accounts.sign_in_limits`)."""
    max_request_bytes: int = 1_048_576
    """Largest request body the API accepts; larger ones get HTTP 413."""
    kubeconfig: str | None = None
    """Kubeconfig of the cluster (None: in-cluster config when running in a pod, else no cluster)."""
    server_url: str | None = None
    """CLI: the API to talk to (default: what `remotegpu login` saved, else http://api_host:api_port)."""
    token: str | None = None
    """CLI: API token to send (default: the one `remotegpu login` saved)."""
    log_format: Literal["json", "console"] | None = None
    """Server logs: `json` (one object per line, with request id, user, environment, shard and epoch
    fields) or `console`; unset: json for `api` and `reconciler`, console for `remotegpu dev`.
    `--log-format` wins."""
    log_level: LogLevel = "info"
    """Verbosity of the process log."""
    db_pool_size: int = 10
    """Connections each process keeps open to Postgres."""
    reconcile_workers: int = 8
    """Environments one reconciler processes at once (threads: most of a step waits on the cluster's
    API or Postgres; `remotegpu bench reconcile --cluster sim` gives 94 envs/s with 4, 109 with 8)."""
    reconciler_shards: int = 1
    """Environments are spread over this many shards, each with its own leader and fencing epoch; a
    reconciler process campaigns for every shard and leads its fair share of them (shards divided by
    the live processes), so N processes share the work. Every replica must have the same value."""
    lease_seconds: float = 30.0
    """How long a worker owns an environment; a crashed worker's lease expires after this."""
    resync_seconds: float = 10.0
    """Every environment is looked at again at least this often, even if every notification is lost."""
    heartbeat_seconds: float = 1.0
    """How often the leader pings its lock connection (and followers retry to take over)."""
    host_down_after_seconds: float = 40.0
    """A host whose last heartbeat is older than this is marked down."""
    provisioning_deadline_seconds: float = 600.0
    """An environment failing to provision for this long, for the same reason, fails."""
    stopping_deadline_seconds: float = 300.0
    """An environment failing to stop for this long, for the same reason, fails."""
    backoff_base_seconds: float = 1.0
    """First retry delay of a temporary error; doubles per attempt, with jitter."""
    backoff_cap_seconds: float = 60.0
    """Longest retry delay."""
    access_image: str = "ghcr.io/remotegpu/access:1"
    """Image that brings a static sshd into environments that ask for SSH access."""
    storage_class: str | None = None
    """StorageClass of environments' persistent volumes (the cluster's default when unset)."""
    dataset_storage: DatasetStorageChoice = "local"
    """Where uploaded datasets' bytes go: `local` (the folder `dataset_dir`) or `s3` (the bucket, endpoint,
    region and credentials of the platform secret `dataset-s3`, set with `remotegpu datasets-s3 set`)."""
    dataset_dir: Path | None = None
    """The local dataset backend's folder (default: `<data_dir>/datasets`); in a cluster, the volume
    `dataset_volume_claim` mounted into the API."""
    dataset_volume_claim: str = "remotegpu-datasets"
    """The PersistentVolumeClaim (ReadWriteMany) holding the local backend's folder in the cluster:
    environments mount their local datasets' folders of it."""
    dataset_sync_image: str = "ghcr.io/remotegpu/remotegpu:0.1.0"
    """The image whose `remotegpu dataset-sync` the sync Jobs of S3 datasets run."""
    dataset_chunk_bytes: int = 8 << 20
    """Size of the chunks a client PUTs to the local backend (at most 64 MiB) and of S3 multipart parts
    (at least 5 MiB, S3's smallest part but the last)."""
    kubernetes_namespace: str = "default"
    """Namespace of every environment's objects (unless `namespace_per_workspace`)."""
    namespace_per_workspace: bool = False
    """Give each workspace a namespace of its own (`rgpu-ws-<workspace id>`)."""
    gpu_binding: GpuBinding = "device-plugin"
    """How a pod gets its GPUs: `device-plugin` (a `nvidia.com/gpu` count; the node picks the devices and
    RemoteGPU reads back which) or `device-id` (the claimed GPUs by UUID in `NVIDIA_VISIBLE_DEVICES`
    with the `nvidia` RuntimeClass, on nodes dedicated to RemoteGPU)."""
    registry_credentials: str | None = None
    """Deprecated, import only: Docker config JSON for private registries. At reconciler start it is
    written into the secrets store when the store has none (then remove it); the store's credentials
    (`remotegpu registry login`, PUT /api/v1/registry-credentials) become each namespace's pull Secret."""
    jupyter_probe_grace_seconds: float = 15.0
    """How long a Jupyter container may run without passing its readiness probe (every 5 s) before the
    environment gets `JupyterUnavailable`: the image has no `jupyter`."""
    secrets_backend: SecretsBackend = "builtin"
    """Where secrets live: `builtin` (encrypted in Postgres under secrets_key) or `vault` (KV v2)."""
    secrets_key: str | None = None
    """Built-in store: Fernet keys, comma-separated; the first encrypts, all decrypt (rotation: put a new
    key first, run `remotegpu secrets rotate`, then drop the old). `remotegpu dev` generates one."""
    vault_url: str | None = None
    """Vault store: the server's address (e.g. https://vault:8200)."""
    vault_mount: str = "secret"
    """Vault store: the KV v2 mount."""
    vault_prefix: str = "remotegpu"
    """Vault store: the folder under the mount (`platform/…`, `workspaces/<id>/…` below it)."""
    vault_auth: VaultAuth = "token"
    """Vault store: log in with `vault_token` or with AppRole (`vault_role_id`, `vault_secret_id`)."""
    vault_token: str | None = None
    """Vault store: the token when vault_auth is token."""
    vault_role_id: str | None = None
    """Vault store: the AppRole role ID."""
    vault_secret_id: str | None = None
    """Vault store: the AppRole secret ID."""
    currency: str = "USD"
    """The deployment's one currency (ISO 4217 code): every price and every amount is in it."""
    billing_period: BillingPeriod = "month"
    """Billing periods, in UTC: calendar months, ISO weeks (from Monday) or days; no interval crosses one."""
    meter_seconds: float = 300.0
    """How often the leader's meter tick runs: it closes into intervals the usage of every stopped
    environment or deleted volume, and of each running meter whose close point passed."""
    meter_close_seconds: float = 1800.0
    """How long a running meter's usage stays open before a tick closes it into billing intervals (whole
    seconds). Open usage is never lost or late for users: usage, cost so far and budgets add each meter's
    open tail live. Each meter closes at moments of its own (spread by its id), so a tick writes about
    meter_seconds ÷ meter_close_seconds of the running meters; 0 closes every meter at every tick (one
    interval per resource per environment per tick). With a period's invoice finalized
    invoice_grace_seconds after it ends, this plus meter_seconds must fit in that grace."""
    registry_sync_seconds: float = 300.0
    """How often the leader syncs the image catalog from the configured registries (`remotegpu images
    sync` runs it at once)."""
    policy_seconds: float = 15.0
    """How often the leader applies stop policies: `policies.max_duration` deadlines and workspaces'
    spending limits (an environment stops at most this long after its deadline or its budget's end)."""
    invoice_grace_seconds: float = 3600.0
    """How long after a billing period ends its invoices stay drafts before the leader finalizes them, so
    usage metered late (a tick delayed by an outage) still lands on the right invoice; usage of a period
    metered after its invoice is final goes on the next invoice as an adjustment line."""
    gateway: GatewayChoice = "direct"
    """How users reach environments with SSH access: `direct` (the claimed host ports only), or also through
    the lab's Apache Guacamole or Jumpserver (a connection per running environment). The gateway's admin
    login lives in the secrets store: `remotegpu gateways set-credentials KIND --username USER`."""
    workspace_gateways: bool = False
    """Let workspace admins choose another configured gateway for their workspace (its `gateway` setting)."""
    guacamole_url: str | None = None
    """Guacamole: the web application's address, e.g. https://guacamole.example.org/guacamole."""
    guacamole_data_source: str | None = None
    """Guacamole: the data source connections are created in (default: the one the admin login returns,
    e.g. `postgresql`)."""
    jumpserver_url: str | None = None
    """Jumpserver: its address, e.g. https://jumpserver.example.org."""
    jumpserver_org: str = "00000000-0000-0000-0000-000000000002"
    """Jumpserver: the organisation (X-JMS-ORG) assets and permissions are created in; the default org."""
    prometheus_url: str | None = None
    """Monitoring: the Prometheus that scrapes NVIDIA's DCGM exporter, e.g. http://prometheus:9090 (None:
    monitoring is not configured: no GPU utilisation is shown and no environment is stopped for idling)."""
    prometheus_timeout_seconds: float = 5.0
    """Monitoring: how long one query to Prometheus may take before it counts as unavailable."""
    dcgm_selector: str = ""
    """Monitoring: label matchers added to every query of the DCGM series, e.g. `cluster="lab-a"` when one
    Prometheus watches several clusters or `job="dcgm-exporter"` when several jobs scrape the exporter."""
    idle_gpu_threshold_percent: float = 5.0
    """Idle stop: a GPU below this utilisation (DCGM_FI_DEV_GPU_UTIL, %) counts as idle."""
    idle_time_scale: float = 1.0
    """Idle stop: every idle window is multiplied by this; 1 in production, less in tests and demos (0.05
    makes a `1m` idle_stop_after a 3-second window)."""
    idle_step_seconds: float = 60.0
    """Idle stop: the resolution of the idle check, at least the DCGM exporter's scrape interval; each
    point is a GPU's highest utilisation over the step before it, so no busy moment is missed."""

    def __post_init__(self) -> None:
        if self.database_url is not None:
            try:
                make_url(self.database_url)
            except ArgumentError:
                raise SettingsError(
                    "database_url: not a valid database URL; expected postgresql://USER@HOST:PORT/DBNAME"
                ) from None
        for name in (
            "access_token_minutes",
            "refresh_token_hours",
            "password_reset_hours",
            "login_attempts_per_minute",
            "login_failures_per_account_per_hour",
            "max_request_bytes",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name}: must be at least 1")
        if self.jwt_secret is not None and len(self.jwt_secret) < 32:
            raise SettingsError(
                "jwt_secret: must be at least 32 characters (HS256 needs 256 bits); generate one with"
                " `openssl rand -base64 48`"
            )
        if not 1 << 20 <= self.dataset_chunk_bytes <= 64 << 20:
            raise SettingsError("dataset_chunk_bytes: must be between 1 MiB and 64 MiB (1048576-67108864)")
        if not 1 <= self.api_port <= 65535:
            raise SettingsError(f"api_port: {self.api_port} is outside 1-65535; choose a free TCP port")
        if self.reconciler_metrics_port is not None and not 0 <= self.reconciler_metrics_port <= 65535:
            raise SettingsError(
                f"reconciler_metrics_port: {self.reconciler_metrics_port} is outside 0-65535; choose a free TCP"
                " port (0: any)"
            )
        if self.db_pool_size < 1:
            raise SettingsError("db_pool_size: must be at least 1")
        self._check_reconciler()
        self._check_gateways()
        self._check_billing()
        self._check_cors()
        self._check_monitoring()

    def _check_reconciler(self) -> None:
        if self.reconcile_workers < 1:
            raise SettingsError("reconcile_workers: must be at least 1")
        if not 1 <= self.reconciler_shards <= MAX_SHARDS:
            raise SettingsError(f"reconciler_shards: must be between 1 and {MAX_SHARDS}")
        for name in ("lease_seconds", "resync_seconds", "heartbeat_seconds", "backoff_base_seconds"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name}: must be more than 0 seconds")

    def _check_monitoring(self) -> None:
        if self.prometheus_url is not None and not self.prometheus_url.startswith(("http://", "https://")):
            raise SettingsError(
                f"prometheus_url: {self.prometheus_url!r} is not an http(s) URL; e.g. http://prometheus:9090"
            )
        if self.prometheus_timeout_seconds <= 0:
            raise SettingsError("prometheus_timeout_seconds: must be more than 0 seconds")
        if not 0 < self.idle_gpu_threshold_percent <= 100:
            raise SettingsError("idle_gpu_threshold_percent: must be more than 0 and at most 100")
        if not 0 < self.idle_time_scale <= 1:
            raise SettingsError("idle_time_scale: must be more than 0 and at most 1")
        if self.idle_step_seconds < 1:
            raise SettingsError("idle_step_seconds: must be at least 1 second")
        if any(character in self.dcgm_selector for character in "{}"):
            raise SettingsError(
                'dcgm_selector: write the label matchers without braces, e.g. cluster="lab-a",job="dcgm"'
            )

    def _check_billing(self) -> None:
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise SettingsError(f"currency: {self.currency!r} is not an ISO 4217 code such as USD or EUR")
        for name in ("meter_seconds", "policy_seconds", "registry_sync_seconds"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name}: must be at least 1 second")
        if self.invoice_grace_seconds < 0:
            raise SettingsError("invoice_grace_seconds: must be 0 or more seconds")
        if self.meter_close_seconds < 0:
            raise SettingsError("meter_close_seconds: must be 0 (close every tick) or more seconds")
        if (
            self.meter_close_seconds
            and self.meter_close_seconds + self.meter_seconds > self.invoice_grace_seconds
        ):
            raise SettingsError(
                f"meter_close_seconds: {self.meter_close_seconds:g} s plus meter_seconds"
                f" ({self.meter_seconds:g} s) exceeds invoice_grace_seconds ({self.invoice_grace_seconds:g} s),"
                " so usage would close after its invoice is final; lower meter_close_seconds (0 closes every"
                " tick) or raise invoice_grace_seconds"
            )

    def _check_cors(self) -> None:
        for origin in self.cors_origins:
            scheme, _, rest = origin.partition("://")
            if origin == "*" or scheme not in {"http", "https"} or not rest or "/" in rest:
                raise SettingsError(
                    f"cors_origins: {origin!r} is not an origin; list each as scheme://host[:port], e.g."
                    " https://console.example.org (no path, no *: credentials need exact origins)"
                )

    def _check_gateways(self) -> None:
        for name in ("guacamole_url", "jumpserver_url"):
            url = getattr(self, name)
            if url is not None and not url.startswith(("http://", "https://")):
                raise SettingsError(
                    f"{name}: {url!r} is not an http(s) URL; e.g. https://gateway.example.org"
                )
        if self.gateway != "direct" and getattr(self, f"{self.gateway}_url") is None:
            raise SettingsError(f"gateway: {self.gateway} needs {self.gateway}_url (its web address)")

    @property
    def dataset_folder(self) -> Path:
        """The local dataset backend's folder: `dataset_dir`, or `<data_dir>/datasets`."""
        return self.dataset_dir or self.data_dir / "datasets"

    def configured_gateways(self) -> tuple[GatewayChoice, ...]:
        """`direct` and every gateway whose address is set, in a fixed order."""
        kinds: list[GatewayChoice] = ["direct"]
        if self.guacamole_url is not None:
            kinds.append("guacamole")
        if self.jumpserver_url is not None:
            kinds.append("jumpserver")
        return tuple(kinds)

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in self.describe().items())})"

    def describe(self) -> dict[str, str | int | float | None]:
        """Return the settings as printable values, with every secret redacted."""
        shown: dict[str, str | int | float | None] = {}
        for field in self.__struct_fields__:
            value = getattr(self, field)
            if field in _SECRET_FIELDS and value is not None:
                value = _REDACTED
            elif field == "database_url" and value is not None:
                value = redact_url(value)
            elif field == "prometheus_url" and value is not None:
                value = without_userinfo(value)
            elif isinstance(value, Path):
                value = str(value)
            shown[field] = value
        return shown


def without_userinfo(url: str) -> str:
    """An http(s) URL without any `user:password@` it may carry (a Prometheus behind basic auth)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def redact_url(url: str) -> str:
    """Return `url` with any password replaced, safe to print or log."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return _REDACTED


_LISTS = frozenset({"cors_origins"})
"""Settings that are lists: a variable gives them comma-separated."""


def load_settings(environ: Mapping[str, str] | None = None, config_file: Path | None = None) -> Settings:
    """Build settings from defaults, the config file (argument or `REMOTEGPU_CONFIG`) and the environment.

    Raises `SettingsError` naming the variable or file key at fault.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    fields = set(Settings.__struct_fields__)

    path = config_file or (Path(env[CONFIG_FILE_VARIABLE]) if env.get(CONFIG_FILE_VARIABLE) else None)
    if path is not None:
        for key, value in _read_config_file(path).items():
            if key not in fields:
                raise SettingsError(
                    f"{path}: unknown setting {key!r}; known settings: {', '.join(sorted(fields))}"
                )
            values[key] = value
            origin[key] = f"{path}: {key}"

    if env.get("DATABASE_URL"):
        values["database_url"] = env["DATABASE_URL"]
        origin["database_url"] = "DATABASE_URL"
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_FILE_VARIABLE:
            continue
        key = name.removeprefix(ENV_PREFIX).lower()
        if key not in fields:
            raise SettingsError(
                f"{name}: unknown setting; known variables: "
                + ", ".join(ENV_PREFIX + f.upper() for f in sorted(fields))
            )
        values[key] = [item.strip() for item in value.split(",") if item.strip()] if key in _LISTS else value
        origin[key] = name

    try:
        return msgspec.convert(values, Settings, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as error:
        raise SettingsError(_name_the_source(str(error), origin)) from None


def _decode_path(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"cannot decode {kind}")


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise SettingsError(
            f"{path}: config file not found; fix {CONFIG_FILE_VARIABLE} or create it"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: not valid TOML ({error})") from None


def _name_the_source(message: str, origin: Mapping[str, str]) -> str:
    """Rewrite msgspec's `... - at $.field` so the message names the variable or file key instead."""
    text, _, where = message.partition(" - at `$.")
    field = where.rstrip("`")
    if field in origin:
        return f"{origin[field]}: {text}"
    return message
