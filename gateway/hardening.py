"""Hardening at the HTTP edge: security headers on every answer, a cap on request header size,
and CORS (off unless origins are allow-listed).

Security headers follow the OWASP REST guidance for JSON APIs: ``nosniff``, no referrer, no
framing, a CSP that allows nothing (an API answer is never a page), and ``no-store`` on /v1
answers, which carry customer data. The API reference under /docs is an HTML page that loads
its renderer, so it keeps every header but the CSP.
"""

from __future__ import annotations

from collections.abc import Sequence

from litestar.config.cors import CORSConfig
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

__all__ = ["HeaderLimitMiddleware", "add_security_headers", "cors_config", "header_bytes", "header_size"]

_ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
_API_ONLY = ((b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),)
_NO_STORE = (b"cache-control", b"no-store")


def add_security_headers(headers: list[tuple[bytes, bytes]], path: str) -> None:
    """Append the security headers every answer gets (see ``gateway.response_headers``)."""
    if path.startswith("/v1/"):
        for name, _ in headers:
            if name.lower() == b"cache-control":
                break  # the route chose its own
        else:
            headers.append(_NO_STORE)
    headers.extend(_ALWAYS)
    if not path.startswith("/docs"):
        headers.extend(_API_ONLY)


def header_size(name: bytes, value: bytes) -> int:
    """Bytes one header line took on the wire (``": "`` and CRLF included)."""
    return len(name) + len(value) + 4


def header_bytes(scope: Scope) -> int:
    """Size of the request's header section as it was on the wire."""
    return sum(header_size(name, value) for name, value in scope["headers"])


class HeaderLimitMiddleware(ASGIMiddleware):
    """Refuses requests whose header section exceeds ``max_bytes`` (431 problem)."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if header_bytes(scope) > self._max:
            raise HTTPException(status_code=431, detail=f"request headers exceed {self._max} bytes")
        await next_app(scope, receive, send)


def cors_config(allow_origins: Sequence[str]) -> CORSConfig | None:
    """CORS for the allow-listed browser origins, or None (no CORS headers at all) when there are none."""
    if not allow_origins:
        return None
    return CORSConfig(
        allow_origins=list(allow_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID", "traceparent"],
        expose_headers=["X-Request-ID", "Location", "Idempotent-Replayed", "Retry-After", "WWW-Authenticate"],
        allow_credentials=False,
        max_age=600,
    )
