"""The real gateway process for end-to-end tests: 2 gunicorn workers in auth dev mode, and a
token minted the README's way. Module-scoped: each test module gets its own process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.gateway_process import GatewayProcess, cli_token


def pytest_configure(config: pytest.Config) -> None:
    # Not skipped anywhere (the suite runs everything); `-m "not slow"` leaves them out locally.
    config.addinivalue_line("markers", "slow: an end-to-end test that takes tens of seconds")


@pytest.fixture(scope="module")
def auth_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Auth dev mode, as ``make run`` starts it, with the key in the test's directory."""
    key = tmp_path_factory.mktemp("e2e-auth") / "dev-signing-key.json"
    return {"ERPGW_AUTH__DEV_MODE": "true", "ERPGW_AUTH__DEV_KEY_PATH": str(key)}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, auth_env: dict[str, str]) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path_factory.mktemp("e2e"), env=auth_env, workers=2) as process:
        yield process


@pytest.fixture(scope="module")
def token(gateway: GatewayProcess, auth_env: dict[str, str]) -> str:
    """Minted the README's way: ``erp-gateway token`` (the gateway trusts its key in dev mode)."""
    return cli_token(auth_env, client="e2e-tests")
