"""Property-based conformance: schemathesis generates requests from the committed spec
(openapi/v1.json) and calls the in-process app with a token holding every scope.

Bounded and deterministic (25 examples per operation, derandomized), so it runs inside the
normal suite. Every schemathesis check runs (``call_and_validate`` without ``checks``): any 5xx,
any response that violates its documented schema, status code, content type or headers, valid
data refused or invalid data accepted, ignored auth, a missing required header not refused...
fails the test with a reproducible case. The business refusals of the contract (an unknown SKU
404, an unknown warehouse 422, a return beyond what was delivered 409/422) are what valid data
may meet, so ``positive_data_acceptance`` expects them rather than being dropped.

Random strings rarely name an existing order or return, so each operation's success path is
also called with the spec's own examples and a seeded return (``test_every_operation_succeeds``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from litestar.testing import TestClient
from schemathesis.config import SchemathesisConfig

from erp_backends.sample import SampleSettings
from gateway.app import create_app
from gateway.cli import DEFAULT_SPEC_PATH
from gateway.settings import Settings
from gateway.writes.idempotency import IdempotencySettings
from tests.conftest import Mint, with_dev_auth

SPEC = Path(__file__).parents[2] / DEFAULT_SPEC_PATH

#: What valid data may meet in the contract: unknown SKU, order or return (404), nothing
#: delivered or a write in progress (409), the ERP's business refusals (422).
BUSINESS_REFUSALS = ["2XX", "404", "409", "422"]
schema = schemathesis.openapi.from_path(
    SPEC,
    config=SchemathesisConfig.from_dict(
        {"checks": {"positive_data_acceptance": {"expected-statuses": BUSINESS_REFUSALS}}}
    ),
)


@schema.hook
def map_body(ctx: Any, body: Any) -> Any:
    """JSON Schema counts ``2.0`` as an integer; the contract decodes strictly and refuses it for a
    quantity (tests/api/test_strict_decoding.py), which no schema keyword can state. Integral
    floats are sent as the integers they stand for; everything else is sent as generated."""
    if isinstance(body, float) and body.is_integer() and abs(body) < 2**53:
        return int(body)
    if isinstance(body, list):
        return [map_body(ctx, item) for item in body]
    if isinstance(body, dict):
        return {key: map_body(ctx, value) for key, value in body.items()}
    return body


#: The return seeded before the run, so that ``getReturn`` is seen answering 200.
SEEDED_RETURN = {"orderNumber": "SO-1003", "lines": [{"sku": "HOOD-BLK-L", "quantity": 1, "reason": "wrong_item"}]}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, dev_key_path: Path, mint: Mint) -> Iterator[Any]:
    """One app for the whole module: schemathesis starts its lifespan once and keeps it."""
    workdir = tmp_path_factory.mktemp("schemathesis")
    settings = with_dev_auth(
        Settings(
            sample=SampleSettings(path=str(workdir / "erp.sqlite")),
            idempotency=IdempotencySettings(path=str(workdir / "idempotency.sqlite")),
        ),
        dev_key_path,
    )
    with TestClient(create_app(settings)) as client:  # the sample ERP keeps it in its SQLite file
        headers = {"Authorization": f"Bearer {mint()}", "Idempotency-Key": "schemathesis-seed"}
        seeded = client.post("/v1/returns", json=SEEDED_RETURN, headers=headers)
        assert seeded.status_code == 201, seeded.text
        assert seeded.json()["rmaNumber"] == "RMA-000001"
    return create_app(settings)


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
    case.call_and_validate(app=gateway, headers=headers)


@pytest.mark.parametrize(
    ("path", "method", "parameters", "status"),
    [
        ("/v1/returns/{rmaNumber}", "GET", {"path_parameters": {"rmaNumber": "RMA-000001"}}, 200),
        ("/v1/orders/{orderNumber}", "GET", {"path_parameters": {"orderNumber": "SO-1002"}}, 200),
        ("/v1/orders", "GET", {"query": {"externalRef": "WC-5002"}}, 200),
        (
            "/v1/availability/{sku}",
            "GET",
            {"path_parameters": {"sku": "TEE-NVY-M"}, "query": {"warehouse": "EAST"}},
            200,
        ),
    ],
)
def test_every_operation_succeeds(
    gateway: Any, mint: Mint, path: str, method: str, parameters: dict[str, Any], status: int
) -> None:
    """The success paths random data rarely finds, under every check."""
    case = schema[path][method].Case(**parameters)
    response = case.call_and_validate(app=gateway, headers={"Authorization": f"Bearer {mint(ttl=3600)}"})
    assert response.status_code == status
