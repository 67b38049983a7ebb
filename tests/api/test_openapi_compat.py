"""The breaking-change gate against the published v1, and deprecation mechanics for a v2."""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pytest
from litestar import get
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.testing import TestClient
from msgspec import Meta

import contracts.v1.orders as orders_contract
import contracts.v1.returns as returns_contract
from contracts._base import Request, Response
from contracts.v1._types import LineRef, Quantity, Sku
from contracts.v1.returns import ReturnReason
from gateway.app import create_app
from gateway.auth.scopes import requires
from gateway.cli import PUBLISHED_SPEC_PATH, main, openapi_document
from gateway.decoding import register_request_shapes
from gateway.deprecation import deprecated
from gateway.openapi_diff import breaking, diff
from gateway.settings import Settings

ROOT = Path(__file__).parents[2]
PUBLISHED = ROOT / PUBLISHED_SPEC_PATH


def _published() -> dict[str, Any]:
    document: dict[str, Any] = msgspec.json.decode(PUBLISHED.read_bytes())
    return document


def _current() -> dict[str, Any]:
    document: dict[str, Any] = msgspec.json.decode(openapi_document())
    return document


def test_no_breaking_change_since_the_published_v1() -> None:
    """The gate: what partners built against openapi/published/v1.json still works."""
    found = breaking(diff(_published(), _current()))
    assert not found, (
        "breaking changes against the published v1 (README: Versioning policy; v1 may only gain, "
        "anything else needs /v2):\n" + "\n".join(map(str, found))
    )


def test_the_published_spec_is_a_v1() -> None:
    assert _published()["info"]["version"].startswith("1.")


def test_a_breaking_change_to_a_contract_struct_fails_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop a response field and make an optional request field required, in the Structs
    themselves: the spec generated from the app fails the gate, naming both changes. (The
    replacements pass for the contract modules' own: their annotations resolve there.)"""

    class Address(Response):  # without ``city``
        street: str
        postal_code: str
        country: str

    class ReturnRequestLine(Request):  # ``comment`` now required
        quantity: Quantity
        reason: ReturnReason
        comment: Annotated[str, Meta(max_length=500)]
        sku: Sku | None = None
        line_ref: LineRef | None = None

    for cls, module in ((Address, orders_contract), (ReturnRequestLine, returns_contract)):
        cls.__module__, cls.__qualname__ = module.__name__, cls.__name__
        monkeypatch.setattr(module, cls.__name__, cls)
    found = [str(c) for c in breaking(diff(_published(), _current()))]
    assert any("response 200 `customer.address.city`: field removed" in c for c in found), found
    assert any("POST /v1/returns: request body `lines[].comment`: now required" in c for c in found), found


def test_diff_command_prints_and_check_compatible_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERPGW_LOG_LEVEL", "WARNING")
    tampered = _published()
    tampered["paths"]["/v1/retired"] = {"get": {"operationId": "retired", "responses": {}}}  # gone now
    against = tmp_path / "v1.json"
    against.write_bytes(msgspec.json.encode(tampered))

    assert main(["openapi", "--diff", "--against", str(against)]) == 0  # for a human: never fails
    out = capsys.readouterr().out
    assert "BREAKING  /v1/retired: path removed" in out
    assert main(["openapi", "--check-compatible", "--against", str(against)]) == 1
    assert "/v1/retired: path removed" in capsys.readouterr().err
    assert main(["openapi", "--check-compatible"]) == 0  # against the real published v1


# -- deprecation ---------------------------------------------------------------------------


@get(
    "/v0/widgets/{widget_id:str}",
    operation_id="getWidgetV0",
    summary="A deprecated test-only operation",
    **requires("orders:read"),
    **deprecated(since="2026-01-01", sunset="2027-06-30", successor="/v1/widgets/{widgetId}", docs="/docs/v0"),
    sync_to_thread=False,
)
def deprecated_widget(widget_id: Annotated[str, Parameter(description="Widget")]) -> dict[str, str]:
    if widget_id == "missing":
        raise NotFoundException("no such widget")
    return {"id": widget_id}


@pytest.fixture
def deprecated_client(settings: Settings, mint: Any) -> Iterator[TestClient[Any]]:
    app = create_app(settings)
    app.register(deprecated_widget)
    register_request_shapes(app)
    with TestClient(app) as test_client:
        test_client.headers["Authorization"] = f"Bearer {mint()}"
        yield test_client


def test_a_deprecated_operation_says_so_in_the_spec(deprecated_client: TestClient[Any]) -> None:
    spec = deprecated_client.get("/docs/openapi.json").json()
    operation = spec["paths"]["/v0/widgets/{widget_id}"]["get"]
    assert operation["deprecated"] is True
    assert {"Deprecation", "Sunset", "Link"} <= operation["responses"]["200"]["headers"].keys()
    # and the current operations are not deprecated
    assert not any(
        op.get("deprecated")
        for p, ops in spec["paths"].items()
        if p != "/v0/widgets/{widget_id}"
        for op in ops.values()
    )


def test_a_deprecated_operation_answers_with_deprecation_sunset_and_link(
    deprecated_client: TestClient[Any],
) -> None:
    for path, status in (("/v0/widgets/w1", 200), ("/v0/widgets/missing", 404)):  # errors too
        answer = deprecated_client.get(path)
        assert answer.status_code == status, answer.text
        assert answer.headers["deprecation"] == "@1767225600"  # RFC 9745: 2026-01-01T00:00:00Z
        assert answer.headers["sunset"] == "Wed, 30 Jun 2027 00:00:00 GMT"  # RFC 8594: an HTTP-date
        assert parsedate_to_datetime(answer.headers["sunset"]).year == 2027
        assert (
            answer.headers["link"] == '</v1/widgets/{widgetId}>; rel="successor-version", </docs/v0>; rel="deprecation"'
        )
        assert answer.headers["x-request-id"]  # the rest of the pass still runs


def test_other_operations_carry_no_deprecation_headers(deprecated_client: TestClient[Any]) -> None:
    answer = deprecated_client.get("/v1/orders/SO-1002")
    assert answer.status_code == 200
    assert not {"deprecation", "sunset", "link"} & answer.headers.keys()


def test_deprecated_refuses_a_sunset_before_the_deprecation() -> None:
    with pytest.raises(ValueError, match="before the deprecation date"):
        deprecated(since="2027-01-01", sunset="2026-01-01")
    with pytest.raises(ValueError, match="not a URI reference"):
        deprecated(since="2027-01-01", sunset="2027-06-30", successor='/v2/x>; rel="evil"')


def test_a_new_scope_is_not_breaking_a_removed_one_is() -> None:
    published = _published()
    scheme = published["components"]["securitySchemes"]["oauth2"]
    flow = next(iter(scheme["flows"]))

    def with_scopes(scopes: dict[str, str]) -> dict[str, Any]:
        changed = msgspec.json.decode(msgspec.json.encode(published))
        changed["components"]["securitySchemes"]["oauth2"]["flows"][flow]["scopes"] = scopes
        return changed

    scopes = dict(scheme["flows"][flow]["scopes"])
    added = diff(published, with_scopes({**scopes, "stock:write": "Write stock"}))
    assert [str(c) for c in added if "security scheme" in str(c)] == [
        f"ok        security scheme oauth2: {flow} scope 'stock:write' added"
    ]
    assert not breaking(added)
    removed = diff(published, with_scopes({k: v for k, v in scopes.items() if k != "admin"}))
    assert [str(c) for c in breaking(removed)] == [
        "BREAKING  security scheme oauth2: changed (type, flow, URL or scopes)"
    ]
