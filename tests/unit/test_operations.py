"""Every port operation is declared once (``erp_backends.operations``), and the rest follows it."""

from __future__ import annotations

import pytest

from erp_backends.operations import OPERATIONS, UNDECLARED, check_declared, spec_of
from erp_backends.port import ErpBackend
from gateway.app import create_app
from gateway.auth.scopes import SCOPES, WRITE_SCOPES
from gateway.settings import Settings


def test_every_abstract_port_method_has_a_declaration() -> None:
    lifecycle = {"start", "check_ready", "aclose"}
    assert sorted(ErpBackend.__abstractmethods__ - lifecycle) == sorted(OPERATIONS)
    check_declared(ErpBackend)


def test_an_undeclared_operation_fails_the_start_up() -> None:
    class Bigger(ErpBackend):
        async def cancel_order(self) -> None: ...

    Bigger.__abstractmethods__ = frozenset({*ErpBackend.__abstractmethods__, "cancel_order"})
    with pytest.raises(LookupError, match="cancel_order"):
        check_declared(Bigger)


def test_undeclared_means_a_write_never_retried() -> None:
    assert spec_of("no_such_operation") is UNDECLARED
    assert UNDECLARED.kind == "write"
    assert not UNDECLARED.retried
    assert UNDECLARED.audited


def test_only_the_two_creates_write_and_only_reads_are_retried() -> None:
    assert [name for name, spec in OPERATIONS.items() if spec.kind == "write"] == ["create_return", "create_order"]
    assert not OPERATIONS["create_return"].retried
    assert not OPERATIONS["create_order"].retried  # the intake poster retries it, with backoff
    assert OPERATIONS["create_order"].invalidates == frozenset()  # posted holds cover the old stock
    assert all(spec.retried for spec in OPERATIONS.values() if spec.kind == "read")
    assert OPERATIONS["create_return"].invalidates == {"orders"}
    assert not OPERATIONS["validate_order"].cached


def test_each_route_requires_the_scope_its_operation_declares() -> None:
    app = create_app(Settings())
    declared = {spec.scope for spec in OPERATIONS.values()}
    assert declared <= set(SCOPES)
    assert {spec.scope for spec in OPERATIONS.values() if spec.audited} | {"admin"} == WRITE_SCOPES
    routed = {
        handler.operation_id: list(handler.opt.get("scopes", ()))
        for route in app.routes
        for handler in getattr(route, "route_handlers", ())
        if handler.operation_id in _ROUTE_OPERATION
    }
    assert set(routed) == set(_ROUTE_OPERATION)  # every ERP-backed route is in the map below
    for operation_id, scopes in routed.items():  # ...and asks for exactly its operation's scope
        assert scopes == [OPERATIONS[_ROUTE_OPERATION[operation_id]].scope], operation_id


#: Each ERP-backed route (its OpenAPI operationId) and the port operation it calls.
_ROUTE_OPERATION = {
    "getAvailability": "get_availability",
    "getAvailabilityBatch": "get_availability",
    "checkPrices": "check_prices",
    "validateOrder": "validate_order",
    "getOrder": "get_order",
    "findOrdersByExternalRef": "find_orders",
    "createReturn": "create_return",
    "getReturn": "get_return",
}
