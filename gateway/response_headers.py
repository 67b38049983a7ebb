"""Headers every answer gets, added in ONE ``before_send`` pass (it runs on the hot path).

In order: the security headers, the correlation ID (``X-Request-ID``), the per-client quota
(``RateLimit``, ``RateLimit-Policy``, left in the scope by the quota middleware), and
``Cache-Status`` (RFC 9211) when the cache took part and ``ERP-Backend`` naming the backend
that answered (the request's ``CallNotes``),
``Deprecation``/``Sunset``/``Link`` when the route is deprecated (``gateway.deprecation``);
then the audit log line for writes.
"""

from __future__ import annotations

from litestar.types import Message, Scope

from gateway.audit import audit_writes
from gateway.cache_status import cache_status, call_notes
from gateway.correlation import correlation_id
from gateway.deprecation import deprecation_headers
from gateway.hardening import add_security_headers
from gateway.observability.middleware import RESPONSE_STATUS
from gateway.quota_middleware import quota_headers

__all__ = ["finish_response"]


async def finish_response(message: Message, scope: Scope) -> None:
    if message["type"] != "http.response.start":
        return
    scope["state"][RESPONSE_STATUS] = message["status"]  # for the request metrics and span
    headers = list(message.get("headers", ()))
    add_security_headers(headers, scope.get("path", ""))  # first: it looks for the route's own Cache-Control
    headers.append((b"x-request-id", correlation_id(scope).encode("ascii")))
    headers.extend(quota_headers(scope))
    if (notes := call_notes(scope)) is not None:
        if (status := cache_status(notes)) is not None:
            headers.append((b"cache-status", status.encode("ascii")))
        if notes.backend is not None:
            headers.append((b"erp-backend", notes.backend.encode("ascii")))
    headers.extend(deprecation_headers(scope))
    message["headers"] = headers
    audit_writes(message, scope)
