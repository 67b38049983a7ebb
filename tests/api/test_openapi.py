"""The published spec: committed, current, valid OpenAPI 3.1, complete per operation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from openapi_spec_validator import validate

from gateway.cli import DEFAULT_SPEC_PATH, openapi_document

ROOT = Path(__file__).parents[2]
COMMITTED = ROOT / DEFAULT_SPEC_PATH


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = msgspec.json.decode(COMMITTED.read_bytes())
    return document


def test_committed_spec_matches_the_contracts() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == openapi_document(), (
        "openapi/v1.json is out of date with the contracts: run `.venv/bin/erp-gateway openapi` and commit it "
        "(if this changes a published v1 shape, it is a breaking change: add fields, never alter them)"
    )


def test_spec_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]


def test_every_v1_operation_is_documented(spec: dict[str, Any]) -> None:
    v1 = [(m, p, op) for m, p, op in _operations(spec) if p.startswith("/v1/")]
    # the eight contract operations, order intake (submit, status) and the admin operations
    # (cache invalidation; list, replay and cancel order intakes; the shadow reads' mismatches)
    assert len(v1) == 15
    ids = [op["operationId"] for _, _, op in v1]
    assert len(set(ids)) == len(ids)
    for method, path, op in v1:
        where = f"{method.upper()} {path}"
        assert op.get("summary"), where
        success = [code for code in op["responses"] if code.startswith("2")]
        assert len(success) == 1, where
        assert op["responses"][success[0]]["content"]["application/json"]["examples"], where
        if "requestBody" in op:
            body = op["requestBody"]["content"]["application/json"]
            assert body.get("examples") or body["schema"].get("examples"), where
        errors = {code: r for code, r in op["responses"].items() if code[0] in "45"}
        assert {"400", "503", "504"} <= set(errors), where
        for code, response in errors.items():
            media = response["content"]["application/problem+json"]
            assert media["schema"] == {"$ref": "#/components/schemas/Problem"}, (where, code)
            assert media["examples"], (where, code)


def test_spec_is_served_by_the_app(spec: dict[str, Any], client: Any) -> None:
    assert msgspec.json.decode(client.get("/docs/openapi.json").content)["paths"].keys() == spec["paths"].keys()


def test_the_spec_states_the_wire_behaviour(spec: dict[str, Any]) -> None:
    """Headers from components, a default problem, no unstated security, camelCase path parameters."""
    headers = spec["components"]["headers"]
    for method, path, op in _operations(spec):
        where = f"{method.upper()} {path}"
        assert op.get("description"), where
        assert "security" in op, where
        assert op["responses"]["default"] == {"$ref": "#/components/responses/Problem"}, where
        assert {"405", "431"} <= set(op["responses"]), where
        for code, response in op["responses"].items():
            if code != "default":
                assert response["headers"]["X-Request-ID"] == {"$ref": "#/components/headers/X-Request-ID"}
        for parameter in op.get("parameters", []):
            if parameter["in"] == "path":
                assert "_" not in parameter["name"], where
                assert "{" + parameter["name"] + "}" in path, where
    assert headers["X-Request-ID"]["required"] is True
    created = spec["paths"]["/v1/returns"]["post"]["responses"]["201"]["headers"]
    assert headers[created["Location"]["$ref"].rsplit("/", 1)[1]]["required"] is True
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert spec["info"]["license"]["name"] == "MIT"


def test_a_path_segment_never_holds_a_slash(client: Any) -> None:
    """``%2F`` is decoded before routing: the single-SKU route cannot be asked for ``A/B`` (the
    spec's path pattern excludes ``/``); the batch can."""
    assert client.get("/v1/availability/A%2FB").json()["type"].endswith("/not-found")
    batch = client.post("/v1/availability/batch", json={"skus": ["A/B"]})
    assert batch.status_code == 200
    assert batch.json()["unknownSkus"] == ["A/B"]
