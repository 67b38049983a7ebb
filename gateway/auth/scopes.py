"""The OAuth2 scopes of the v1 API: one per operation, declared on each route with ``requires``.

A route handler names its scope in ``opt["scopes"]`` (read by ``require_scopes``) and
in its OpenAPI ``security`` requirement; ``requires`` writes both so they cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from erp_backends.operations import OPERATIONS

__all__ = ["PII_SCOPE", "SCOPES", "SECURITY_SCHEME", "WRITE_SCOPES", "requires", "requires_any"]

#: Name of the OAuth2 security scheme in the OpenAPI components.
SECURITY_SCHEME = "oauth2"

#: scope -> what it grants (published in the OpenAPI security scheme).
SCOPES: dict[str, str] = {
    "availability:read": "Read stock per SKU and warehouse",
    "prices:read": "Check customer-specific prices",
    "orders:validate": "Validate a cart before checkout",
    "orders:read": "Look up orders (customer email, phone and address withheld)",
    "orders:read:pii": "With orders:read, see the customer's email, phone and address",
    "returns:write": "Create return authorizations",
    "orders:write": "Submit orders (order intake) and read their intake status",
    "returns:read": "Read return authorizations",
    "admin": "Administrative operations such as cache invalidation",
}

#: Scopes that let a caller change state: operations requiring one are audited. The port's
#: audited operations say theirs (``erp_backends.operations``); ``admin`` is the gateway's own.
WRITE_SCOPES = frozenset({spec.scope for spec in OPERATIONS.values() if spec.audited} | {"admin"})

#: Grants the customer's contact data in order lookups; without it they are null.
PII_SCOPE = "orders:read:pii"


def requires(*scopes: str) -> dict[str, Any]:
    """Route decorator arguments requiring every one of ``scopes``: ``@get(..., **requires("orders:read"))``."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"unknown or missing scope: {unknown}")
    return {"opt": {"scopes": list(scopes)}, "security": [{SECURITY_SCHEME: list(scopes)}]}


def requires_any(*scopes: str) -> dict[str, Any]:
    """Route decorator arguments requiring at least one of ``scopes`` (OpenAPI: alternative
    security requirements): ``@get(..., **requires_any("orders:write", "orders:read"))``."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or len(scopes) < 2:
        raise ValueError(f"unknown scope or fewer than two alternatives: {unknown or scopes}")
    return {"opt": {"scopes_any": list(scopes)}, "security": [{SECURITY_SCHEME: [scope]} for scope in scopes]}
