"""The audit log of writes: one JSON line per call of an operation that changes state.

An operation is a write when its required scopes include one of ``WRITE_SCOPES`` (creating a
return, admin operations such as cache invalidation), so routes added later are covered
without registering anything. Each line says who (client id and class), what (operation id,
method, path, the created resource), when, the outcome (HTTP status) and the correlation ID;
refused attempts (401, 403) are logged too. Never the token, never request or response bodies
(which may carry customer data).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar.types import HTTPResponseStartEvent, Scope

from gateway.auth.scopes import WRITE_SCOPES
from gateway.correlation import correlation_id
from gateway.identity import client_identity

__all__ = ["AUDIT_LOGGER", "AuditRecord", "audit_writes"]

AUDIT_LOGGER = "erp_gateway.audit"
log = logging.getLogger(AUDIT_LOGGER)


class AuditRecord(msgspec.Struct, kw_only=True, frozen=True):
    """One audited write, serialized as one JSON line."""

    ts: str
    client_id: str | None
    client_class: str | None
    action: str
    method: str
    path: str
    target: str | None
    status: int
    outcome: str
    replayed: bool
    correlation_id: str


def _is_write(handler: Any) -> bool:
    scopes = getattr(handler, "opt", {}).get("scopes") or ()
    return any(scope in WRITE_SCOPES for scope in scopes)


def _outcome(status: int) -> str:
    if status < 400:
        return "success"
    if status in (401, 403):
        return "denied"
    return "failed" if status >= 500 else "rejected"


def audit_writes(message: HTTPResponseStartEvent, scope: Scope) -> None:
    """Log the response status of every write operation (called from the ``before_send`` hook)."""
    handler = scope.get("route_handler")
    if handler is None or not _is_write(handler):
        return
    location: str | None = None
    replayed = False
    for name, value in message.get("headers", ()):
        lowered = name.lower()
        if lowered == b"location":
            location = value.decode("latin-1")
        elif lowered == b"idempotent-replayed":
            replayed = value == b"true"
    identity = client_identity(scope)
    status = int(message["status"])
    record = AuditRecord(
        ts=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        client_id=identity.client_id if identity else None,
        client_class=identity.client_class if identity else None,
        action=str(getattr(handler, "operation_id", None) or getattr(handler, "handler_name", "unknown")),
        method=str(scope.get("method", "")),
        path=scope.get("path", ""),
        target=location if status < 400 else None,
        status=status,
        outcome=_outcome(status),
        replayed=replayed,
        correlation_id=correlation_id(scope),
    )
    log.info(msgspec.json.encode(record).decode("utf-8"))
