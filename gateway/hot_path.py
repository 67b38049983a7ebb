"""The checkout's hot path: a cached ``GET /v1/availability/{sku}`` answered without Litestar's
routing, middleware and response machinery, which cost three times the rest (docs/benchmarks.md).

It answers only what it can answer *without waiting and without judging*: the token is in the
verified-token cache, the caller holds the route's scopes, this worker's cache tier holds a
fresh answer, and a quota token is already leased. Anything else (a token seen for the first
time, a miss, a stale entry, an empty lease, a query string, a CORS request, a header
section over the limit, an invalid ``Host``) goes on to the app untouched, which answers it
as it always does: a 401, a 404, a refresh, a 429. Nothing is spent before the answer is
certain, so a request the app then serves pays its quota once.

The answer is the same either way: the same JSON, and the same headers from the same
``before_send`` pass (``gateway.response_headers``: request ID, RateLimit, Cache-Status,
security headers), and the request telemetry around both records them alike. This runs
inside ``Litestar.__call__`` (so ``send`` already carries that pass) and outside its router.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Litestar
from litestar._asgi.utils import is_valid_host
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Receive, Scope, Send

from contracts.v1._types import REFERENCE_MAX_LENGTH, REFERENCE_PATTERN
from gateway.auth import Authentication
from gateway.auth.middleware import parse_bearer
from gateway.bootstrap import Runtime
from gateway.cache_status import notes_for
from gateway.deprecation import DEPRECATION_OPT
from gateway.hardening import header_size
from gateway.identity import set_client_identity
from gateway.quota_middleware import note_quota

__all__ = ["HotPath"]

_PREFIX = "/v1/availability/"
_SKU = re.compile(REFERENCE_PATTERN)
_JSON = (b"content-type", b"application/json")


class HotPath:
    def __init__(self, app: ASGIApp, litestar: Litestar, auth: Authentication, max_header_bytes: int) -> None:
        self.app = app
        self._litestar = litestar
        self._verifier = auth.verifier
        self._max_token = auth.middleware.max_header_bytes
        self._max_header = max_header_bytes
        # Litestar's own routing decides which handler this is: its path template (the route
        # label of metrics and spans) and the scopes it declares, read once, never restated.
        _, handler, _, _, self._template = litestar.asgi_router.handle_routing(path=_PREFIX + "SKU", method="GET")
        # A deprecated route's answers carry its deprecation headers: the router's business.
        self._serves = DEPRECATION_OPT not in handler.opt
        self._scopes: list[str] = handler.opt["scopes"]
        # Paths the router gives to another route (``/v1/availability/batch``: POST only, a 405 here).
        self._taken = frozenset(
            route.path[len(_PREFIX) :]
            for route in litestar.routes
            if route.path.startswith(_PREFIX) and not route.path_parameters
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self._serves
            and scope["type"] == ScopeType.HTTP
            and scope["method"] == "GET"
            and scope["path"].startswith(_PREFIX)
        ):
            body = self._answer(scope)
            if body is not None:
                headers = [_JSON, (b"content-length", str(len(body)).encode("ascii"))]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
        await self.app(scope, receive, send)

    def _answer(self, scope: Any) -> bytes | None:
        """The answer's body, or None: the app answers this request."""
        sku: str = scope["path"][len(_PREFIX) :]
        if (
            scope["query_string"]
            or scope.get("root_path")
            or "/" in sku  # not one path segment: another route, or none
            or len(sku) > REFERENCE_MAX_LENGTH
            or not _SKU.fullmatch(sku)
            or sku in self._taken
        ):
            return None  # the router answers (a 400 for a SKU it refuses, whatever the cache holds)
        # One pass over the headers (the app's middlewares each make their own).
        size = 0
        authorization: bytes | None = None
        for name, value in scope["headers"]:
            size += header_size(name, value)
            if name == b"authorization":
                if authorization is not None:
                    return None  # refused by the app
                authorization = value
            elif name == b"origin" or (name == b"host" and not is_valid_host(value)):
                return None  # CORS is the app's business; an invalid Host is refused by its router
        if size > self._max_header:
            return None
        try:
            token = parse_bearer(authorization, self._max_token)
        except HTTPException:
            return None
        identity = self._verifier.cached(token)
        if identity is None or not all(s in identity.scopes for s in self._scopes):
            return None
        runtime: Runtime = self._litestar.state.runtime
        chain = runtime.erp.chain_for("get_availability", identity.client_id, identity.channel)
        shadow = runtime.erp.routed.shadow
        if shadow is not None:
            drawn = notes_for(scope).sampled = shadow.draw("get_availability", chain.name)
            if drawn:
                return None  # sampled for a shadow read: the route answers (and offers it)
        cache = chain.cache
        found = cache.cached_availability(sku) if cache is not None else None
        if found is None or (runtime.intake is not None and not runtime.intake.holds.none_held(sku)):
            return None  # held units to subtract, or not known to be none: the route answers
        quotas = runtime.quotas
        if quotas is not None:
            decision = quotas.try_acquire(identity.client_id, identity.client_class)
            if decision is None:
                return None
            note_quota(scope, decision)
        body, ttl = found
        set_client_identity(scope, identity)
        scope["path_template"] = self._template
        notes = notes_for(scope)
        notes.hit(ttl)
        notes.backend = chain.name
        return body
