"""Errors translated at the edge: every failure becomes an RFC 9457 problem+json answer.

``type`` is a stable URI per kind of error (``PROBLEM_BASE`` + slug); clients match on it,
never on ``title`` or ``detail``. The catalog below is the complete list, documented in
docs/problems.md; a slug is never renamed once published.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from contracts.v1 import FieldError, Problem
from erp_backends.errors import Conflict, ErpError, ErpTimeout, ErpUnavailable, NotFound, Rejected
from gateway.correlation import correlation_id

__all__ = [
    "PROBLEMS",
    "PROBLEM_BASE",
    "PROBLEM_MEDIA_TYPE",
    "check_problem_codes",
    "exception_handlers",
    "problem_response",
]

log = logging.getLogger("erp_gateway.errors")

PROBLEM_BASE = "https://erp-gateway.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

#: slug -> (status, title). The stable catalog of problem types.
PROBLEMS: dict[str, tuple[int, str]] = {
    "validation-failed": (400, "The request is not valid"),
    "unauthorized": (401, "Authentication is required"),
    "forbidden": (403, "The caller may not do this"),
    "not-found": (404, "No such resource"),
    "sku-not-found": (404, "Unknown SKU"),
    "order-not-found": (404, "Unknown order"),
    "return-authorization-not-found": (404, "Unknown return authorization"),
    "intake-not-found": (404, "Unknown order intake"),
    "method-not-allowed": (405, "Method not allowed"),
    "not-acceptable": (406, "Not acceptable"),
    "nothing-delivered": (409, "Nothing delivered yet"),
    "insufficient-stock": (409, "Not enough stock for the order"),
    "price-changed": (409, "Prices changed since the shopper saw them"),
    "order-already-submitted": (409, "The order was submitted already"),
    "intake-not-changeable": (409, "The order intake cannot be changed now"),
    "payload-too-large": (413, "Request body too large"),
    "unsupported-media-type": (415, "Unsupported media type"),
    "headers-too-large": (431, "Request headers too large"),
    "unknown-customer": (422, "Unknown customer"),
    "unknown-warehouse": (422, "Unknown warehouse"),
    "unknown-sku": (422, "Unknown SKU in the request"),
    "not-salable": (422, "SKU not for sale"),
    "unsupported-currency": (422, "Unsupported currency"),
    "invalid-return-line": (422, "Return line names no order line"),
    "line-not-on-order": (422, "Return line is not on the order"),
    "ambiguous-return-line": (422, "Return line is ambiguous"),
    "return-quantity-exceeded": (422, "More returned than delivered"),
    "idempotency-key-reused": (422, "Idempotency-Key reused with a different request"),
    "idempotency-request-in-progress": (409, "A request with this Idempotency-Key is in progress"),
    "rejected-by-erp": (422, "The ERP rejected the request"),
    "too-many-requests": (429, "Too many requests"),
    "internal-error": (500, "Internal error"),
    "erp-unavailable": (503, "The ERP is unavailable"),
    "erp-circuit-open": (503, "The ERP is failing; calls to it are paused"),
    "erp-busy": (503, "Too many ERP calls at once; the request was shed"),
    "quota-unavailable": (503, "Quotas cannot be checked right now"),
    "idempotency-unavailable": (503, "The write cannot be recorded right now"),
    "intake-unavailable": (503, "Orders cannot be recorded right now"),
    "invalidation-not-shared": (503, "The invalidation could not reach every worker"),
    "service-unavailable": (503, "The service is unavailable right now"),
    "erp-timeout": (504, "The ERP did not answer in time"),
}

_HTTP_SLUGS = {
    400: "validation-failed",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    413: "payload-too-large",
    415: "unsupported-media-type",
    431: "headers-too-large",
    429: "too-many-requests",
    # A bare 503 says nothing about why; the quota's own refusal carries its ``code``.
    503: "service-unavailable",
}

_RETRY_AFTER_SECONDS = 5


def _subclasses(root: type) -> list[type]:
    out: list[type] = []
    sub: type
    for sub in root.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def check_problem_codes(*roots: type[Exception]) -> None:
    """Every problem slug an exception class carries (its class-level ``code``) is in the
    catalog, and so is every slug the edge falls back to; raise ``LookupError`` naming the
    rest. Run at start-up, after the modules defining the exceptions are imported."""
    roots = roots or (ErpError, HTTPException)
    carried = {
        f"{cls.__module__}.{cls.__qualname__}": code
        for root in roots
        for cls in (root, *_subclasses(root))
        if isinstance(code := cls.__dict__.get("code"), str)
    }
    missing = {where: code for where, code in carried.items() if code not in PROBLEMS}
    missing.update({f"_HTTP_SLUGS[{status}]": slug for status, slug in _HTTP_SLUGS.items() if slug not in PROBLEMS})
    if missing:
        raise LookupError(f"problem slugs without an entry in gateway/problems.py PROBLEMS: {missing}")


def problem_response(
    request: Request[Any, Any, Any],
    slug: str,
    detail: str,
    *,
    status: int | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[bytes]:
    known_status, title = PROBLEMS.get(slug, (status or 500, slug.replace("-", " ").capitalize()))
    problem = Problem(
        type=PROBLEM_BASE + slug,
        title=title,
        status=status or known_status,
        detail=detail,
        correlation_id=correlation_id(request.scope),
        instance=request.url.path,
        errors=errors,
        **extra,
    )
    return Response(
        content=msgspec.json.encode(problem),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


# msgspec says "... - at `$.lines[0].quantity`"; Litestar adds the key separately.
_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


def _wire_name(request: Request[Any, Any, Any], key: str) -> str:
    """The name a caller sees for a handler parameter (``externalRef``, ``Idempotency-Key``)."""
    try:
        field = request.route_handler.parsed_fn_signature.parameters.get(key)
    except Exception:  # no handler matched: nothing to translate
        return key
    kwarg = getattr(field, "kwarg_definition", None)
    for attr in ("name", "query", "header"):
        if alias := getattr(kwarg, attr, None):
            return str(alias)
    return key


def _field_errors(request: Request[Any, Any, Any], exc: ValidationException) -> list[FieldError]:
    out: list[FieldError] = []
    extra = exc.extra if isinstance(exc.extra, list) else [exc.extra] if exc.extra else []
    for item in extra:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid value"))
        match = _AT.search(message)
        if match:
            field = match.group("path") or "body"
            message = message[: match.start()]
        else:
            field = _wire_name(request, str(item.get("key") or "body"))
        out.append(FieldError(field=field, message=message))
    return out


_MISSING = re.compile(r"^Missing required (?P<source>\w+) parameter '(?P<name>[^']+)'")


def _on_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    errors = _field_errors(request, exc)
    if not errors and (missing := _MISSING.match(exc.detail)):
        errors = [FieldError(field=missing.group("name"), message=f"required {missing.group('source')} is missing")]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) if errors else exc.detail
    return problem_response(request, "validation-failed", detail, errors=errors or None)


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    slug: str | None = getattr(exc, "code", None)  # an exception that knows its problem type says it
    if slug is None:
        slug = _HTTP_SLUGS.get(exc.status_code, "internal-error" if exc.status_code >= 500 else "validation-failed")
    headers = {k: v for k, v in (exc.headers or {}).items()}
    return problem_response(request, slug, exc.detail, status=exc.status_code, headers=headers or None)


def _on_erp(request: Request[Any, Any, Any], exc: ErpError) -> Response[bytes]:
    cid = correlation_id(request.scope)
    if isinstance(exc, NotFound):
        return problem_response(request, exc.code, exc.detail, status=404)
    if isinstance(exc, Rejected):
        slug = exc.code if exc.code in PROBLEMS else "rejected-by-erp"
        status = 409 if isinstance(exc, Conflict) else 422
        errors = [FieldError(field=exc.field, message=exc.detail)] if exc.field else None
        extra: dict[str, Any] = {"available": exc.available} if exc.available is not None else {}
        extra.update(getattr(exc, "extra", {}))  # a refusal's own fields (``gateway.intake``)
        if exc.field and exc.field.startswith("lines["):
            extra["line"] = exc.field
        retry_after = getattr(exc, "retry_after", None)  # a write in progress: when to try again
        headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else None
        return problem_response(request, slug, exc.detail, status=status, errors=errors, headers=headers, **extra)
    if isinstance(exc, ErpTimeout):
        log.warning("ERP timeout", extra={"correlation_id": cid, "error": exc.detail})
        return problem_response(request, "erp-timeout", exc.detail, headers={"Retry-After": str(_RETRY_AFTER_SECONDS)})
    if isinstance(exc, ErpUnavailable):
        log.warning("ERP unavailable", extra={"correlation_id": cid, "error": exc.detail})
        retry_after = max(1, math.ceil(exc.retry_after)) if exc.retry_after is not None else _RETRY_AFTER_SECONDS
        slug = exc.code if exc.code in PROBLEMS else "erp-unavailable"
        return problem_response(request, slug, exc.detail, headers={"Retry-After": str(retry_after)})
    log.error("ERP error", extra={"correlation_id": cid, "error": exc.detail})
    return problem_response(request, "erp-unavailable", "the ERP failed", status=502)


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error", extra={"correlation_id": correlation_id(request.scope)})
    return problem_response(request, "internal-error", "an unexpected error occurred; quote the correlation ID")


exception_handlers: dict[type[Exception] | int, Any] = {
    ValidationException: _on_validation,
    HTTPException: _on_http,
    ErpError: _on_erp,
    Exception: _on_unexpected,
}
