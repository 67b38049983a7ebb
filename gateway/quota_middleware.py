"""Per-client quotas at the HTTP edge: ``RateLimit`` headers, 429 problems with ``Retry-After``.

Runs after authentication (the client is the token's ``client_id``; without one, the caller
is ``anonymous``) and only for ``/v1`` paths. The counting itself is ``policies.quotas``.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from gateway.identity import client_identity

__all__ = ["QuotaExceeded", "QuotaMiddleware"]


class QuotaExceeded(HTTPException):
    status_code = 429


class QuotaStoreDown(HTTPException):
    status_code = 503


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
        headers = decision.headers()
        if not decision.allowed:
            wire = {k.decode(): v.decode() for k, v in headers}
            if decision.store_down:
                raise QuotaStoreDown(
                    detail="quotas cannot be checked right now; retry shortly",
                    headers={**wire, "Retry-After": "1"},
                )
            raise QuotaExceeded(
                detail=f"quota of {decision.limit} requests per {decision.window_seconds} s used up",
                headers={**wire, "Retry-After": str(decision.reset_seconds)},
            )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
