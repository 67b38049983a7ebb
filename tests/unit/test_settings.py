"""Settings layering: defaults < TOML file < environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import Settings, load_settings


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
