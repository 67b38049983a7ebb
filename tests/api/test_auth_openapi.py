"""The published spec tells partners what each operation needs: the OAuth2 scheme and scopes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from gateway.app import create_app
from gateway.auth import SCOPES
from gateway.cli import DEFAULT_SPEC_PATH
from gateway.settings import Settings

SPEC: dict[str, Any] = msgspec.json.decode((Path(__file__).parents[2] / DEFAULT_SPEC_PATH).read_bytes())


def test_the_oauth2_client_credentials_scheme_lists_every_scope() -> None:
    scheme = SPEC["components"]["securitySchemes"]["oauth2"]
    assert scheme["type"] == "oauth2"
    flow = scheme["flows"]["clientCredentials"]
    assert flow["tokenUrl"].startswith("https://")
    assert set(flow["scopes"]) == set(SCOPES)


def test_every_v1_operation_declares_the_scope_its_handler_requires() -> None:
    required = {
        handler.operation_id: (handler.opt.get("scopes"), handler.opt.get("scopes_any"))
        for route in create_app(Settings()).routes
        for handler in getattr(route, "route_handlers", ())
        if getattr(handler, "operation_id", None)
    }
    for path, operations in SPEC["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            scopes, alternatives = required[operation["operationId"]]
            assert scopes or alternatives, where
            if scopes:  # every one of them
                assert operation["security"] == [{"oauth2": scopes}], where
            else:  # any one of them
                assert operation["security"] == [{"oauth2": [scope]} for scope in alternatives], where
            assert {"401", "403"} <= set(operation["responses"]), where
