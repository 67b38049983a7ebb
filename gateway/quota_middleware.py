"""Per-client quotas at the HTTP edge: ``RateLimit`` headers, 429 problems with ``Retry-After``.

Runs after authentication (the client is the token's ``client_id``; without one, the caller
is ``anonymous``) and only for ``/v1`` paths. The counting itself is ``policies.quotas``.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Receive, Scope, Send

from gateway.identity import client_identity
from gateway.observability.middleware import QUOTA_REFUSAL
from policies.quotas import QuotaDecision

__all__ = ["QuotaExceeded", "QuotaMiddleware", "note_quota", "quota_headers"]


class QuotaExceeded(HTTPException):
    status_code = 429
    code = "too-many-requests"


class QuotaStoreDown(HTTPException):
    status_code = 503
    code = "quota-unavailable"


_STATE_KEY = "ratelimit_headers"


def quota_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The ``RateLimit`` headers of the request's quota decision (none for unmetered paths)."""
    state = scope.get("state")
    found: list[tuple[bytes, bytes]] = state.get(_STATE_KEY, []) if state else []
    return found


def note_quota(scope: Scope, decision: QuotaDecision) -> None:
    """Keep the decision's ``RateLimit`` headers for the answer (``quota_headers``)."""
    scope["state"][_STATE_KEY] = decision.headers()


class QuotaMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter = scope["app"].state.runtime.quotas if scope["type"] == ScopeType.HTTP else None
        if limiter is None or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        identity = client_identity(scope)
        client_id, client_class = (identity.client_id, identity.client_class) if identity else ("anonymous", "default")
        decision = await limiter.acquire(client_id, client_class)
        note_quota(scope, decision)
        if not decision.allowed:  # the RateLimit headers are added to the problem by finish_response
            scope["state"][QUOTA_REFUSAL] = "store_down" if decision.store_down else "exceeded"
            if decision.store_down:
                raise QuotaStoreDown(
                    detail="quotas cannot be checked right now; retry shortly", headers={"Retry-After": "1"}
                )
            raise QuotaExceeded(
                detail=f"quota of {decision.limit} requests per {decision.window_seconds} s used up",
                headers={"Retry-After": str(decision.reset_seconds)},
            )
        await self.app(scope, receive, send)
