"""What each port operation is, declared once: read or write, retried, cached, invalidating, scope, audit.

Policies (retry, breakers, timeouts, cache invalidation), the scope guard and the audit log read
this table instead of keeping their own lists. An operation missing from it is treated as a
write that is never retried (``spec_of``), and the composition root refuses to start with one
(``check_declared``): adding a port method means declaring it here.
"""

from __future__ import annotations

import inspect
from typing import Literal

import msgspec

__all__ = ["OPERATIONS", "UNDECLARED", "Operation", "OperationSpec", "check_declared", "spec_of"]

Operation = Literal[
    "get_availability",
    "check_prices",
    "validate_order",
    "get_order",
    "find_orders",
    "create_return",
    "create_order",
    "get_return",
]


class OperationSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One port operation. The defaults are the safe ones: a write, never retried, not cached."""

    #: ``read`` leaves the ERP as it was; ``write`` changes it (own breaker and timeout).
    kind: Literal["read", "write"] = "write"
    #: Safe to call again after a failure (the retry policy may repeat it).
    idempotent: bool = False
    #: Answered from the cache (``policies.caching``), per item.
    cached: bool = False
    #: Cache kinds a success makes out of date (``orders``: the order the call names).
    invalidates: frozenset[Literal["availability", "prices", "orders"]] = frozenset()
    #: The OAuth2 scope of the routes that call it (``gateway.auth.scopes``).
    scope: str = ""
    #: Every call is written to the audit log (``gateway.audit``).
    audited: bool = True

    @property
    def retried(self) -> bool:
        """Only idempotent reads are retried; a write never is, idempotent or not."""
        return self.kind == "read" and self.idempotent


_READ = OperationSpec(kind="read", idempotent=True, audited=False)

OPERATIONS: dict[str, OperationSpec] = {
    "get_availability": msgspec.structs.replace(_READ, cached=True, scope="availability:read"),
    "check_prices": msgspec.structs.replace(_READ, cached=True, scope="prices:read"),
    # Never from the cache: validation decides on the ERP's current stock and prices.
    "validate_order": msgspec.structs.replace(_READ, scope="orders:validate"),
    "get_order": msgspec.structs.replace(_READ, cached=True, scope="orders:read"),
    "find_orders": msgspec.structs.replace(_READ, cached=True, scope="orders:read"),
    # Idempotent by its key (the ERP-side lookup), yet never retried by policies: a write.
    "create_return": OperationSpec(
        kind="write", idempotent=True, invalidates=frozenset({"orders"}), scope="returns:write", audited=True
    ),
    "get_return": msgspec.structs.replace(_READ, scope="returns:read"),
    # Posted by the intake worker, never by a route. It changes the ERP's stock, yet drops no
    # cached stock: the order's posted hold is subtracted from every snapshot read before it
    # (gateway.intake.holds), and a dropped entry would leave intake nothing to judge on while
    # the ERP is down (and send every post's SKU back to the ERP in a flash sale).
    "create_order": OperationSpec(kind="write", idempotent=True, scope="orders:write", audited=True),
}

#: What an operation without a declaration is taken to be: a write, never retried, audited.
UNDECLARED = OperationSpec()


def spec_of(operation: str) -> OperationSpec:
    return OPERATIONS.get(operation, UNDECLARED)


def check_declared(port: type) -> None:
    """Raise ``LookupError`` naming every abstract operation of ``port`` that has no declaration.

    The lifecycle hooks (``check_ready``) are not operations."""
    abstract = sorted(getattr(port, "__abstractmethods__", ()))
    missing = [name for name in abstract if name not in OPERATIONS and name not in _LIFECYCLE]
    if missing:
        raise LookupError(f"port operations without a declaration in erp_backends/operations.py: {missing}")
    unknown = [name for name in OPERATIONS if not inspect.iscoroutinefunction(getattr(port, name, None))]
    if unknown:
        raise LookupError(f"declared operations the port does not have: {unknown}")


_LIFECYCLE = frozenset({"start", "check_ready", "aclose"})
