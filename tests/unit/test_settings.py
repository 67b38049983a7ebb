"""Settings layering: defaults < TOML file < environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import Settings, SettingsError, check_startup, load_settings


def test_defaults_need_nothing() -> None:
    settings = load_settings({})
    assert settings.backend == "sample"
    assert settings.server.host == "127.0.0.1"
    assert settings.http.max_body_bytes == 256 * 1024


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('log_level = "DEBUG"\n[server]\nport = 9000\nworkers = 4\n[sample]\npath = "/data/erp.sqlite"\n')
    settings = load_settings({"ERPGW_CONFIG": str(config), "ERPGW_SERVER__PORT": "9100", "PATH": "/bin"})
    assert settings.server.port == 9100
    assert settings.server.workers == 4
    assert settings.log_level == "DEBUG"
    assert settings.sample.path == "/data/erp.sqlite"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"ERPGW_SERVER__PORT": "eighty"}, "server.port"),
        ({"ERPGW_BACKEND": "oracle"}, "backend"),
        ({"ERPGW_SERVR__PORT": "1"}, "servr"),
    ],
)
def test_a_bad_setting_is_named(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        load_settings(environ)


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    missing = [name for name, _, _ in Settings.describe() if f"`{name}`" not in readme]
    assert missing == [], "add these to the README's configuration table"


@pytest.mark.parametrize(
    ("environ", "env", "says"),
    [
        ({"ERPGW_ERP_LIMITS__CALLS_PER_SECOND": "lots"}, "ERPGW_ERP_LIMITS__CALLS_PER_SECOND", "not a number"),
        ({"ERPGW_BACKEND": "oracle"}, "ERPGW_BACKEND", "not one of: sample, tryton"),
        ({"ERPGW_SERVR__PORT": "1"}, "ERPGW_SERVR", "no such setting"),
        ({"ERPGW_AUTH__ALGORITHMS": "HS256"}, "ERPGW_AUTH__ALGORITHMS", "not accepted"),
    ],
)
def test_a_bad_setting_names_its_environment_variable(environ: dict[str, str], env: str, says: str) -> None:
    with pytest.raises(SettingsError, match=says) as caught:
        load_settings(environ)
    assert caught.value.env == env
    assert str(caught.value).startswith(f"invalid setting {env} ")
    assert "\n" not in str(caught.value)


def test_startup_checks_name_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="ERPGW_AUTH__DEV_MODE=true") as caught:
        check_startup(load_settings({}))
    assert caught.value.env == "ERPGW_AUTH__ISSUER"
    check_startup(load_settings({}), serving=False)  # the sample backend needs nothing else
    dev = {"ERPGW_AUTH__DEV_MODE": "true", "ERPGW_AUTH__DEV_KEY_PATH": str(tmp_path / "key.json")}
    check_startup(load_settings({**dev, "ERPGW_SAMPLE__PATH": str(tmp_path / "erp.sqlite")}))
    with pytest.raises(SettingsError) as caught:
        check_startup(load_settings({**dev, "ERPGW_SAMPLE__PATH": str(tmp_path)}))
    assert caught.value.env == "ERPGW_SAMPLE__PATH"
