"""Settings: defaults, file, environment, precedence, errors that name their source, no secret shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from remotegpu.core.platform.errors import SettingsError
from remotegpu.core.platform.settings import load_settings


def test_defaults_need_no_environment() -> None:
    settings = load_settings({})
    assert settings.database_url is None
    assert settings.api_port == 8080
    assert settings.data_dir == Path(".remotegpu")


def test_prefixed_variables_are_parsed_to_their_types() -> None:
    settings = load_settings(
        {"REMOTEGPU_API_PORT": "9090", "REMOTEGPU_DATA_DIR": "/var/lib/rgpu", "REMOTEGPU_LOG_LEVEL": "debug"}
    )
    assert settings.api_port == 9090
    assert settings.data_dir == Path("/var/lib/rgpu")
    assert settings.log_level == "debug"


def test_database_url_is_honoured_and_prefixed_variable_wins() -> None:
    assert load_settings({"DATABASE_URL": "postgresql://a@h/one"}).database_url == "postgresql://a@h/one"
    both = {"DATABASE_URL": "postgresql://a@h/one", "REMOTEGPU_DATABASE_URL": "postgresql://b@h/two"}
    assert load_settings(both).database_url == "postgresql://b@h/two"


def test_config_file_is_read_and_environment_overrides_it(tmp_path: Path) -> None:
    config = tmp_path / "remotegpu.toml"
    config.write_text('api_port = 7000\napi_host = "0.0.0.0"\n')
    settings = load_settings({"REMOTEGPU_API_PORT": "7001"}, config_file=config)
    assert settings.api_host == "0.0.0.0"
    assert settings.api_port == 7001
    assert load_settings({"REMOTEGPU_CONFIG": str(config)}).api_port == 7000


def test_unknown_variable_is_an_error_naming_it() -> None:
    with pytest.raises(SettingsError, match="REMOTEGPU_DATABSE_URL: unknown setting"):
        load_settings({"REMOTEGPU_DATABSE_URL": "postgresql://x@h/d"})


def test_unknown_file_key_is_an_error_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "remotegpu.toml"
    config.write_text("api_prot = 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'api_prot'"):
        load_settings({}, config_file=config)


def test_malformed_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^REMOTEGPU_API_PORT: Expected `int`"):
        load_settings({"REMOTEGPU_API_PORT": "eighty"})


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"REMOTEGPU_API_PORT": "70000"}, "api_port"),
        ({"DATABASE_URL": "not a url"}, "database_url"),
        ({"REMOTEGPU_DB_POOL_SIZE": "0"}, "db_pool_size"),
        ({"REMOTEGPU_LOG_LEVEL": "loud"}, "REMOTEGPU_LOG_LEVEL"),
        ({"REMOTEGPU_METER_CLOSE_SECONDS": "-1"}, "meter_close_seconds"),
        # usage closed after its invoice is final would land on the next one as an adjustment
        ({"REMOTEGPU_INVOICE_GRACE_SECONDS": "1800"}, "meter_close_seconds.*raise invoice_grace_seconds"),
        ({"REMOTEGPU_PROMETHEUS_URL": "prometheus:9090"}, "prometheus_url.*http://prometheus:9090"),
        ({"REMOTEGPU_IDLE_GPU_THRESHOLD_PERCENT": "0"}, "idle_gpu_threshold_percent"),
        ({"REMOTEGPU_IDLE_STEP_SECONDS": "0.5"}, "idle_step_seconds"),
        ({"REMOTEGPU_IDLE_TIME_SCALE": "2"}, "idle_time_scale"),
        (
            {"REMOTEGPU_DCGM_SELECTOR": '{job="dcgm"}'},
            "dcgm_selector: write the label matchers without braces",
        ),
    ],
)
def test_invalid_values_are_refused_with_the_field_named(variables: dict[str, str], field: str) -> None:
    with pytest.raises(SettingsError, match=field):
        load_settings(variables)


def test_missing_config_file_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings({"REMOTEGPU_CONFIG": str(tmp_path / "absent.toml")})


def test_secrets_never_appear_in_repr_or_describe() -> None:
    settings = load_settings(
        {
            "DATABASE_URL": "postgresql://app:hunter2-db@db:5432/rgpu",
            "REMOTEGPU_JWT_SECRET": "hunter2-jwt-" + "k" * 32,
            "REMOTEGPU_PROMETHEUS_URL": "https://monitor:hunter2-prom@prometheus.example.org:9090",
        }
    )
    shown = repr(settings) + str(settings.describe())
    assert "hunter2" not in shown
    assert "app:***@db:5432/rgpu" in shown
    assert settings.describe()["prometheus_url"] == "https://prometheus.example.org:9090"
    assert settings.jwt_secret == "hunter2-jwt-" + "k" * 32


def test_short_jwt_secret_is_refused_with_how_to_make_one() -> None:
    with pytest.raises(SettingsError, match=r"jwt_secret: must be at least 32 characters.*openssl rand"):
        load_settings({"REMOTEGPU_JWT_SECRET": "short"})


def test_closing_every_tick_fits_any_invoice_grace() -> None:
    settings = load_settings({"REMOTEGPU_INVOICE_GRACE_SECONDS": "0", "REMOTEGPU_METER_CLOSE_SECONDS": "0"})
    assert (settings.meter_close_seconds, settings.invoice_grace_seconds) == (0, 0)
