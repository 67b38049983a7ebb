"""Settings layering: defaults < TOML file < environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import (
    SampleBackendSettings,
    Settings,
    SettingsError,
    TrytonBackendSettings,
    check_startup,
    load_settings,
)


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
        (
            {"ERPGW_QUOTAS__CLASSES__DEFAULT__REQUESTS": "10", "ERPGW_QUOTAS__CLASSES__DEFAULT__WINDOW_SECONDS": "0"},
            "ERPGW_QUOTAS__CLASSES__DEFAULT__WINDOW_SECONDS",
            "more than zero",
        ),
        ({"ERPGW_QUOTAS__LEASE_DIVISOR": "0"}, "ERPGW_QUOTAS__LEASE_DIVISOR", "more than zero"),
        ({"ERPGW_QUOTAS__MAX_LEASE": "0"}, "ERPGW_QUOTAS__MAX_LEASE", "more than zero"),
        ({"ERPGW_INTAKE__POSTING_CONCURRENCY": "0"}, "ERPGW_INTAKE__POSTING_CONCURRENCY", "more than zero"),
        ({"ERPGW_INTAKE__PRICE_TOLERANCE": "-0.01"}, "ERPGW_INTAKE__PRICE_TOLERANCE", "0 or more"),
        ({"ERPGW_INTAKE__PRICE_TOLERANCE": "lots"}, "ERPGW_INTAKE__PRICE_TOLERANCE", "decimal"),
        ({"ERPGW_INTAKE__LEASE_SECONDS": "1"}, "ERPGW_INTAKE__LEASE_SECONDS", "longer than"),
        ({"ERPGW_INTAKE__RETENTION_DAYS": "0.001"}, "ERPGW_INTAKE__RETENTION_DAYS", "outlast a posted hold"),
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


def test_without_backends_the_one_backend_is_named_after_its_kind() -> None:
    settings = load_settings({"ERPGW_BACKEND": "tryton", "ERPGW_TRYTON__URL": "http://erp:8000"})
    entries = settings.backend_entries()
    assert list(entries) == ["tryton"]
    assert settings.default_backend_name() == "tryton"
    assert isinstance(entries["tryton"], TrytonBackendSettings)
    assert entries["tryton"].url == "http://erp:8000"
    assert list(load_settings({}).backend_entries()) == ["sample"]


def test_named_backends_from_toml_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        'default_backend = "next"\n[backends.legacy]\nkind = "sample"\npath = "/data/legacy.sqlite"\n'
        '[backends.next]\nkind = "tryton"\ndatabase = "retail"\n'
    )
    settings = load_settings(
        {
            "ERPGW_CONFIG": str(config),
            "ERPGW_BACKENDS__NEXT__URL": "http://next:8000",
            "ERPGW_BACKENDS__PG__KIND": "tryton",
        }
    )
    legacy, nxt, pg = (settings.backends[n] for n in ("legacy", "next", "pg"))
    assert isinstance(legacy, SampleBackendSettings)
    assert legacy.path == "/data/legacy.sqlite"
    assert isinstance(nxt, TrytonBackendSettings)
    assert (nxt.url, nxt.database) == ("http://next:8000", "retail")
    assert isinstance(pg, TrytonBackendSettings)
    assert settings.default_backend_name() == "next"


@pytest.mark.parametrize(
    ("environ", "env", "says"),
    [
        ({"ERPGW_BACKENDS__NEXT__KIND": "oracle"}, "ERPGW_BACKENDS__NEXT__KIND", "not one of: sample, tryton"),
        ({"ERPGW_BACKENDS__NEXT__URL": "http://x"}, "ERPGW_BACKENDS__NEXT__KIND", "set the backend's kind"),
        (
            {"ERPGW_BACKENDS__NEXT__KIND": "tryton", "ERPGW_BACKENDS__NEXT__MAX_CONNECTIONS": "many"},
            "ERPGW_BACKENDS__NEXT__MAX_CONNECTIONS",
            "not a whole number",
        ),
        (
            {"ERPGW_BACKENDS__NEXT__KIND": "sample", "ERPGW_BACKENDS__NEXT__URL": "x"},
            "ERPGW_BACKENDS__NEXT__URL",
            "no such",
        ),
        (
            {"ERPGW_BACKENDS__A__KIND": "sample", "ERPGW_BACKENDS__B__KIND": "sample"},
            "ERPGW_DEFAULT_BACKEND",
            "name the one serving",
        ),
        ({"ERPGW_DEFAULT_BACKEND": "other"}, "ERPGW_DEFAULT_BACKEND", "not a configured backend"),
    ],
)
def test_a_bad_backend_setting_names_its_variable(environ: dict[str, str], env: str, says: str) -> None:
    with pytest.raises(SettingsError, match=says) as caught:
        load_settings(environ)
    assert caught.value.env == env


def test_startup_checks_name_a_named_backends_variable(tmp_path: Path) -> None:
    settings = load_settings({"ERPGW_BACKENDS__NEXT__KIND": "tryton"})
    with pytest.raises(SettingsError, match="ERPGW_BACKENDS__NEXT__PASSWORD") as caught:
        check_startup(settings, serving=False)
    assert caught.value.env == "ERPGW_BACKENDS__NEXT__PASSWORD_FILE"


@pytest.mark.parametrize(
    ("redis", "env", "says"),
    [
        ({"MODE": "cluster"}, "ERPGW_REDIS__NODES", "needs one or more cluster nodes"),
        ({"MODE": "sentinel", "NODES": "s1:26379"}, "ERPGW_REDIS__SERVICE_NAME", "monitor the primary"),
        ({"MODE": "cluster", "NODES": "n1:7000,n2"}, "ERPGW_REDIS__NODES", "'n2' is not host:port"),
        ({"MODE": "cluster", "NODES": "n1:7000", "URL": "redis://x"}, "ERPGW_REDIS__URL", "is for standalone"),
        ({"NODES": "n1:7000"}, "ERPGW_REDIS__NODES", "set ERPGW_REDIS__MODE"),
        ({"URL": "redis://x", "TLS": "true"}, "ERPGW_REDIS__TLS", "rediss:// URL"),
        ({"URL": "redis://x", "PASSWORD_FILE": "/nonexistent/pw"}, "ERPGW_REDIS__PASSWORD_FILE", "cannot read"),
        ({"URL": "redis://x", "KEY_PREFIX": "{gw}:"}, "ERPGW_REDIS__KEY_PREFIX", "hash tags"),
        ({"URL": "redis://x", "MAX_CONNECTIONS": "0"}, "ERPGW_REDIS__MAX_CONNECTIONS", "at least 1"),
        ({"MODE": "replicated"}, "ERPGW_REDIS__MODE", "standalone"),
    ],
)
def test_a_redis_deployment_is_named_completely(tmp_path: Path, redis: dict[str, str], env: str, says: str) -> None:
    dev = {"ERPGW_AUTH__DEV_MODE": "true", "ERPGW_AUTH__DEV_KEY_PATH": str(tmp_path / "key.json")}
    dev["ERPGW_SAMPLE__PATH"] = str(tmp_path / "erp.sqlite")
    dev["ERPGW_IDEMPOTENCY__PATH"] = str(tmp_path / "idem.sqlite")
    with pytest.raises(SettingsError, match=says) as caught:
        check_startup(load_settings({**dev, **{f"ERPGW_REDIS__{k}": v for k, v in redis.items()}}))
    assert caught.value.env == env


def test_each_redis_mode_starts_with_its_own_fields(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    dev = {"ERPGW_AUTH__DEV_MODE": "true", "ERPGW_AUTH__DEV_KEY_PATH": str(tmp_path / "key.json")}
    dev["ERPGW_SAMPLE__PATH"] = str(tmp_path / "erp.sqlite")
    dev["ERPGW_IDEMPOTENCY__PATH"] = str(tmp_path / "idem.sqlite")
    for redis in (
        {"URL": "rediss://cache:6380/0", "USERNAME": "gw", "PASSWORD_FILE": str(password)},
        {"MODE": "sentinel", "NODES": "s1:26379,s2:26379,[::1]:26379", "SERVICE_NAME": "gwprimary"},
        {"MODE": "cluster", "NODES": "n1:7000", "TLS": "true"},
    ):
        check_startup(load_settings({**dev, **{f"ERPGW_REDIS__{k}": v for k, v in redis.items()}}))


def test_serve_options_become_the_server_settings_every_worker_reads() -> None:
    from argparse import Namespace

    from gateway.cli import _with_serve_options

    settings = load_settings({"ERPGW_SERVER__WORKERS": "2", "ERPGW_SERVER__PORT": "9100"})
    given = _with_serve_options(settings, Namespace(host=None, port=None, workers=4))
    assert (given.server.workers, given.server.port, given.server.host) == (4, 9100, "127.0.0.1")
    assert _with_serve_options(settings, Namespace(host=None, port=None, workers=None)) is settings


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--workers", "0", "0 is not from 1 to 1024"),
        ("--port", "70000", "70000 is not from 1 to 65535"),
        ("--workers", "two", "'two' is not a whole number"),
    ],
)
def test_a_bad_serve_option_is_named_by_its_flag(
    flag: str, value: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", flag, value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: {said}" in err
    assert "ERPGW_" not in err


@pytest.mark.parametrize(
    ("environ", "env", "shown"),
    [
        ({"ERPGW_REDIS__URL": "http://gw:s3cret-pw@redis:6379/0"}, "ERPGW_REDIS__URL", "'http://***@redis:6379/0'"),
        (
            {
                "ERPGW_BACKEND": "tryton",
                "ERPGW_TRYTON__URL": "ftp://admin:s3cret-pw@erp/db",
                "ERPGW_TRYTON__PASSWORD": "x",
            },
            "ERPGW_TRYTON__URL",
            "'ftp://***@erp/db'",
        ),
    ],
)
def test_a_refused_url_is_shown_without_its_password(
    tmp_path: Path, environ: dict[str, str], env: str, shown: str
) -> None:
    dev = {"ERPGW_AUTH__DEV_MODE": "true", "ERPGW_AUTH__DEV_KEY_PATH": str(tmp_path / "key.json")}
    dev["ERPGW_SAMPLE__PATH"] = str(tmp_path / "erp.sqlite")
    with pytest.raises(SettingsError) as caught:
        check_startup(load_settings({**dev, **environ}))
    assert caught.value.env == env
    assert shown in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)


def test_a_posted_hold_outlasts_every_stock_snapshot_in_use() -> None:
    """Intake judges on stock up to max_stock_age old; availability answers serve a cache entry
    up to its TTL plus its longest stale window: a posted hold must be kept longer than both."""
    settings = load_settings({"ERPGW_CACHE__AVAILABILITY__TTL_SECONDS": "900"})
    rule = settings.cache.availability
    assert settings.intake.posted_hold_seconds(settings.cache) > 900 + rule.stale_if_error_seconds
    assert settings.intake.posted_hold_seconds(settings.cache) > settings.intake.max_stock_age_seconds


def test_intake_refuses_an_erp_that_would_not_commit_the_stock(tmp_path: Path) -> None:
    environ = {
        "ERPGW_AUTH__DEV_MODE": "true",
        "ERPGW_AUTH__DEV_KEY_PATH": str(tmp_path / "key.json"),
        "ERPGW_BACKEND": "tryton",
        "ERPGW_TRYTON__PASSWORD": "x",
        "ERPGW_TRYTON__CONFIRM_ORDERS": "false",
        "ERPGW_INTAKE__PATH": str(tmp_path / "intake.sqlite"),
    }
    with pytest.raises(SettingsError, match="a quotation commits no stock") as caught:
        check_startup(load_settings(environ))
    assert caught.value.env == "ERPGW_TRYTON__CONFIRM_ORDERS"
    check_startup(load_settings({**environ, "ERPGW_INTAKE__ENABLED": "false"}))
