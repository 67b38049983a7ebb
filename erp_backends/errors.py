"""The small exception tree every adapter translates its ERP's failures into.

    ErpError
    ├── ErpUnavailable      the ERP cannot be reached or answered 5xx,    -> 503
    │                       or the gateway shields it (breaker open, call budget spent)
    ├── ErpTimeout          the ERP did not answer in time                -> 504
    ├── NotFound            the thing asked for does not exist            -> 404
    └── Rejected            a business rule of the ERP or contract said no -> 422
        └── Conflict        the request clashes with the current state    -> 409
            └── InProgress  another attempt with the same idempotency key
                            is under way: try again after ``retry_after``  -> 409

Adapters raise these at one edge (``raise ... from exc``); the gateway maps them to RFC 9457
problems at its own edge. ``code`` is a stable slug that becomes the problem ``type``; the
gateway checks at start-up that every class-level ``code`` is in its catalog.
"""

from __future__ import annotations

__all__ = ["Conflict", "ErpError", "ErpTimeout", "ErpUnavailable", "InProgress", "NotFound", "Rejected"]


class ErpError(Exception):
    """Base of every error a backend may raise (one of no more specific kind is a 502)."""

    code = "erp-unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ErpUnavailable(ErpError):
    """The ERP could not be reached, refused the connection, or failed on its side.

    ``retry_after`` (seconds) is set when the gateway knows when trying again makes sense,
    for example while a circuit breaker is open or the ERP call budget is spent.
    """

    code = "erp-unavailable"

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ErpTimeout(ErpError):
    """The ERP took longer than the configured timeout."""

    code = "erp-timeout"


class NotFound(ErpError):
    """A SKU, order or return authorization that the ERP does not know."""

    def __init__(self, resource: str, key: str) -> None:
        super().__init__(f"{resource} {key!r} was not found")
        self.resource = resource
        self.key = key
        self.code = f"{resource.replace(' ', '-')}-not-found"


class Rejected(ErpError):
    """A business rule refused the request. ``field`` points at the input that broke it."""

    def __init__(self, code: str, detail: str, *, field: str | None = None, available: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.field = field
        self.available = available


class Conflict(Rejected):
    """The request is well-formed but clashes with the resource's state (for example, nothing delivered yet)."""


class InProgress(Conflict):
    """Another attempt with the same idempotency key is still under way; nothing was done."""

    def __init__(self, detail: str, *, retry_after: float) -> None:
        super().__init__("idempotency-request-in-progress", detail, field="Idempotency-Key")
        self.retry_after = retry_after
