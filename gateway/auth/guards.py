"""Authorization: the caller's scopes against the route's ``opt["scopes"]``.

Called by the authentication middleware for every request it authenticates, right after the
token is verified, so it covers every route, including ones added later (the admin routes):
a route that is authenticated but declares no scope is refused (fail closed). It is not a
Litestar guard on purpose: Litestar copies the route handler for every guard call, which cost
more on the cached hot path than the authorization itself.
"""

from __future__ import annotations

from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Scope

from gateway.auth.challenges import challenge
from gateway.identity import client_identity

__all__ = ["require_scopes"]


def require_scopes(scope: Scope) -> None:
    """Raise 401/403 unless the authenticated caller holds every scope the route declares
    (``opt["scopes"]``), or one of its alternatives (``opt["scopes_any"]``)."""
    handler: BaseRouteHandler = scope["route_handler"]
    required: list[str] | None = handler.opt.get("scopes")
    identity = client_identity(scope)
    alternatives: list[str] | None = handler.opt.get("scopes_any")
    if alternatives is not None:  # ``requires_any``: one of them suffices
        if identity is None:
            raise NotAuthorizedException(detail="a bearer token is required", headers={"WWW-Authenticate": challenge()})
        if not any(alternative in identity.scopes for alternative in alternatives):
            needed = " or ".join(alternatives)
            raise PermissionDeniedException(
                detail=f"this operation requires one of the scopes {needed}",
                headers={"WWW-Authenticate": challenge("insufficient_scope", f"requires {needed}", alternatives[0])},
            )
        return
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
