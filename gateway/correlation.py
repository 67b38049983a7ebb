"""Correlation: every request carries one ID from the caller to the ERP call and back.

Accepts ``X-Request-ID`` (kept when it is a sane token) and W3C ``traceparent`` (passed on
when well-formed), generates an ID when none came, and echoes ``X-Request-ID`` on every
response, errors and unknown routes included (``gateway.response_headers`` adds it in the
``before_send`` hook, which runs for every response the app sends). Headers are read once, lazily, per request.
"""

from __future__ import annotations

import os
import re
from typing import Any

from litestar.types import Scope

__all__ = ["correlation_id", "traceparent"]

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:@/+=-]{1,128}$")
_TRACEPARENT = re.compile(rb"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
_KEY = "correlation"


def _read(scope: Scope | Any) -> tuple[str, str | None]:
    state = scope.setdefault("state", {})
    found: tuple[str, str | None] | None = state.get(_KEY)
    if found is not None:
        return found
    request_id: bytes | None = None
    parent: bytes | None = None
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            request_id = value.strip()
        elif name == b"traceparent":
            parent = value.strip().lower()
    cid = request_id.decode("ascii") if request_id and _REQUEST_ID.match(request_id) else os.urandom(16).hex()
    tp = parent.decode("ascii") if parent and _TRACEPARENT.match(parent) else None
    state[_KEY] = found = (cid, tp)
    return found


def correlation_id(scope: Scope | Any) -> str:
    """The request's correlation ID: the caller's ``X-Request-ID``, or one generated for it."""
    return _read(scope)[0]


def traceparent(scope: Scope | Any) -> str | None:
    """The caller's W3C ``traceparent`` when well-formed, to continue the trace downstream."""
    return _read(scope)[1]
