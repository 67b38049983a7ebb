"""What the route decorators cannot state, added to the generated spec in one pass.

Litestar describes bodies and status codes; the rest of the wire behaviour is added here to
the document it generates, so the spec says everything a generated client needs:

- the response headers, declared once in ``components/headers`` and referenced from every
  response that carries them, ``required`` only where the gateway always sends them
  (``gateway.response_headers``, ``gateway.quota_middleware``, ``gateway.problems``);
- a ``default`` problem response on every operation (a 500, or a 502 when the ERP fails
  in a way it has no name for);
- ``security: []`` on the operations that need no token (``/healthz``, ``/readyz``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import OpenAPI

from gateway.problems import PROBLEM_BASE, PROBLEM_MEDIA_TYPE

__all__ = ["WireOpenAPIConfig", "complete_document"]

_REF = "#/components/headers/"


def _header(description: str, schema: dict[str, Any], example: Any, *, required: bool) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema, "example": example}


#: component name -> header object. Where one header is always sent on some answers and only
#: sometimes on others, it has a component per case (``Retry-After``, ``Retry-After-In-Progress``).
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": _header(
        "The correlation ID: the caller's own `X-Request-ID` when it sent a valid one, else a generated one. "
        "It is the `correlationId` of every problem and is passed to the ERP call.",
        {"type": "string", "pattern": "^[A-Za-z0-9._:@/+=-]{1,128}$"},
        "4bf92f3577b34da6a3ce929d0e0e4736",
        required=True,
    ),
    "RateLimit-Policy": _header(
        "The caller's quota (IETF RateLimit header fields draft): `q` requests per window of `w` seconds. "
        "Sent on every `/v1` answer once the token is accepted, while quotas are enabled (the default).",
        {"type": "string", "pattern": '^"[^"]*";q=[0-9]+;w=[0-9]+$'},
        '"default";q=6000;w=60',
        required=False,
    ),
    "RateLimit": _header(
        "What is left of the quota: `r` requests, for `t` more seconds. Sent with `RateLimit-Policy`.",
        {"type": "string", "pattern": '^"[^"]*";r=[0-9]+;t=[0-9]+$'},
        '"default";r=5999;t=43',
        required=False,
    ),
    "Cache-Status": _header(
        "What the gateway's cache did (RFC 9211): `hit` with the seconds left (`ttl`) and, for a stale copy, "
        "`detail`; or `fwd=miss`/`fwd=partial` and `stored` when the ERP was asked. Absent when no cache "
        "took part (the cache disabled, the request refused before the ERP call).",
        {"type": "string", "pattern": "^erp-gateway(; .+)?$"},
        "erp-gateway; hit; ttl=4",
        required=False,
    ),
    "ERP-Backend": _header(
        "The configured backend that answered (several backends at once: routing per operation and caller, "
        "lookups that ask an old ERP after the new one). Absent when no backend was asked (an idempotent "
        "replay, a refusal before the ERP call).",
        {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$"},
        "legacy",
        required=False,
    ),
    "Location": _header(
        "Where what was created is read back: the return authorization (`getReturn`), the order intake "
        "(`getOrderIntake`).",
        {"type": "string", "format": "uri-reference"},
        "/v1/returns/RMA-000001",
        required=True,
    ),
    "Idempotent-Replayed": _header(
        "`true` when this is the replay of an earlier request with the same `Idempotency-Key`; absent on the "
        "first answer.",
        {"type": "string", "enum": ["true"]},
        "true",
        required=False,
    ),
    "Retry-After": _header(
        "Seconds to wait before trying again.",
        {"type": "integer", "minimum": 0},
        5,
        required=True,
    ),
    "Retry-After-In-Progress": _header(
        "Seconds to wait before trying again: sent when a request with the same `Idempotency-Key` is in "
        "progress (`idempotency-request-in-progress`), not when nothing was delivered yet.",
        {"type": "integer", "minimum": 0},
        2,
        required=False,
    ),
    "WWW-Authenticate": _header(
        'The bearer challenge (RFC 6750 section 3): `error="invalid_token"` for a bad token, '
        '`error="insufficient_scope"` with the `scope` needed for a 403.',
        {"type": "string"},
        'Bearer realm="erp-gateway", error="insufficient_scope", scope="orders:read"',
        required=True,
    ),
    "Allow": _header(
        "The methods this path answers.",
        {"type": "string"},
        "OPTIONS, GET",
        required=True,
    ),
}

#: Operations whose answers come through the cache, so may carry ``Cache-Status``.
CACHED_OPERATIONS = frozenset(
    {"getAvailability", "getAvailabilityBatch", "checkPrices", "getOrder", "findOrdersByExternalRef"}
)
#: Operations answered by a backend, so may carry ``ERP-Backend``.
BACKEND_OPERATIONS = CACHED_OPERATIONS | {"validateOrder", "getReturn", "createReturn"}
#: Answered before the quota is counted (the token is refused, no route matched the method, the
#: header section is too large): no ``RateLimit`` headers.
_BEFORE_QUOTA = frozenset({"401", "405", "431"})
#: Answered before any cache was asked.
_BEFORE_CACHE = frozenset({"400", "401", "403", "405", "413", "415", "429", "431"})

_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

_DEFAULT = {
    "description": (
        "Any other error, as a problem: `internal-error` (500), or `erp-unavailable` with 502 when the ERP "
        "failed in a way the gateway has no name for."
    ),
    "headers": {"X-Request-ID": {"$ref": _REF + "X-Request-ID"}},
    "content": {
        PROBLEM_MEDIA_TYPE: {
            "schema": {"$ref": "#/components/schemas/Problem"},
            "examples": {
                "internal-error": {
                    "summary": "Internal error",
                    "value": {
                        "type": PROBLEM_BASE + "internal-error",
                        "title": "Internal error",
                        "status": 500,
                        "detail": "what went wrong, for a human",
                        "correlationId": "4bf92f3577b34da6a3ce929d0e0e4736",
                        "instance": "/v1/orders/SO-1002",
                    },
                }
            },
        }
    },
}


def _headers_for(path: str, operation_id: str, status: str) -> list[tuple[str, str]]:
    """(header name, component) for one response of one operation."""
    out = [("X-Request-ID", "X-Request-ID")]
    v1 = path.startswith("/v1/")
    if v1 and status not in _BEFORE_QUOTA:
        out += [("RateLimit-Policy", "RateLimit-Policy"), ("RateLimit", "RateLimit")]
    if operation_id in CACHED_OPERATIONS and status not in _BEFORE_CACHE:
        out.append(("Cache-Status", "Cache-Status"))
    if operation_id in BACKEND_OPERATIONS and status.startswith("2"):
        out.append(("ERP-Backend", "ERP-Backend"))
    if (operation_id, status) in {("createReturn", "201"), ("submitOrder", "202")}:
        out += [("Location", "Location"), ("Idempotent-Replayed", "Idempotent-Replayed")]
    if v1 and status in {"429", "503", "504"}:
        out.append(("Retry-After", "Retry-After"))
    if operation_id == "createReturn" and status == "409":
        out.append(("Retry-After", "Retry-After-In-Progress"))
    if status in {"401", "403"}:
        out.append(("WWW-Authenticate", "WWW-Authenticate"))
    if status == "405":
        out.append(("Allow", "Allow"))
    return out


def complete_document(document: dict[str, Any]) -> dict[str, Any]:
    """Add the headers, the ``default`` response and the empty ``security`` (see the module)."""
    components = document.setdefault("components", {})
    components["headers"] = HEADERS
    components["responses"] = {"Problem": _DEFAULT}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            operation.setdefault("security", [])  # no requirement stated: no token needed
            responses = operation["responses"]
            for status, response in responses.items():
                headers = response.setdefault("headers", {})
                for name, component in _headers_for(path, operation["operationId"], status):
                    headers[name] = {"$ref": _REF + component}
            responses["default"] = {"$ref": "#/components/responses/Problem"}
    return document


@dataclass
class _WireOpenAPI(OpenAPI):
    def to_schema(self) -> dict[str, Any]:
        return complete_document(super().to_schema())


@dataclass
class WireOpenAPIConfig(OpenAPIConfig):
    """``OpenAPIConfig`` whose document gets ``complete_document``, served and exported alike."""

    def to_openapi_schema(self) -> OpenAPI:
        base = super().to_openapi_schema()
        return _WireOpenAPI(**{f.name: getattr(base, f.name) for f in fields(base)})
