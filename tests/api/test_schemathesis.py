"""Property-based conformance: schemathesis generates requests from the committed spec
(openapi/v1.json) and calls the in-process app with a token holding every scope.

Bounded and deterministic (25 examples per operation, derandomized), so it runs inside the
normal suite. Any 5xx, any response that violates its documented schema, status code, content
type or headers fails the test with a reproducible case.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

from erp_backends.sample import SampleSettings
from gateway.app import create_app
from gateway.cli import DEFAULT_SPEC_PATH
from gateway.settings import Settings
from tests.conftest import Mint, with_dev_auth

SPEC = Path(__file__).parents[2] / DEFAULT_SPEC_PATH
schema = schemathesis.openapi.from_path(SPEC)

CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, dev_key_path: Path) -> Iterator[Any]:
    """One app for the whole module: schemathesis starts its lifespan once and keeps it."""
    workdir = tmp_path_factory.mktemp("schemathesis")
    return create_app(with_dev_auth(Settings(sample=SampleSettings(path=str(workdir / "erp.sqlite"))), dev_key_path))


@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_the_api_conforms_to_its_spec(case: schemathesis.Case, gateway: Any, mint: Mint) -> None:
    headers = {"Authorization": f"Bearer {mint(ttl=3600)}"}
    case.call_and_validate(app=gateway, headers=headers, checks=CHECKS)
