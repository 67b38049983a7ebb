"""Authorization: a Litestar guard comparing the caller's scopes with the route's ``opt["scopes"]``.

Registered once on the app, so it covers every route, including ones added later (the admin
routes): a route that is authenticated but declares no scope is refused (fail closed).
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from gateway.auth.middleware import challenge
from gateway.identity import client_identity

__all__ = ["require_scopes"]


async def require_scopes(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    required: list[str] | None = handler.opt.get("scopes")
    identity = client_identity(connection.scope)
    if required is None:
        if identity is None:
            return  # an exempt route: health, docs
        raise PermissionDeniedException(
            detail="this operation declares no scope", headers={"WWW-Authenticate": challenge("insufficient_scope")}
        )
    if identity is None:
        raise NotAuthorizedException(detail="a bearer token is required", headers={"WWW-Authenticate": challenge()})
    missing = [scope for scope in required if scope not in identity.scopes]
    if missing:
        needed = " ".join(required)
        raise PermissionDeniedException(
            detail=f"this operation requires the scope {needed}",
            headers={"WWW-Authenticate": challenge("insufficient_scope", f"requires {needed}", needed)},
        )
