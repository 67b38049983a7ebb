"""Bearer-token authentication of every route except the exempt ones (health, docs, metrics).

Runs after routing, before handlers: finds exactly one ``Authorization: Bearer``
header (RFC 6750), refuses tokens in the query string, bounds the token's size, verifies it and
stores the caller with ``set_client_identity``. Failures raise ``NotAuthorizedException``; the
app's exception handlers turn it into a 401 problem with a ``WWW-Authenticate`` challenge.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl

from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from gateway.auth.challenges import REALM, challenge
from gateway.auth.guards import require_scopes
from gateway.auth.tokens import TokenError, TokenVerifier
from gateway.identity import set_client_identity

__all__ = ["EXEMPT_PATHS", "REALM", "BearerAuthMiddleware", "bearer_token", "challenge", "parse_bearer"]

log = logging.getLogger("erp_gateway.auth")

#: Request paths that need no token (health, the API reference, metrics). Anything else does;
#: and a route that declares scopes is refused by the guard even if it were reached unauthenticated.
EXEMPT_PATHS = re.compile(r"^/(?:healthz|readyz|metrics|docs)(?:/.*)?$")

# RFC 6750 section 2.1: credentials = "Bearer" 1*SP b64token
_BEARER = re.compile(rb"^[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*) *$")
_SCHEME = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _refuse(detail: str, error: str | None = "invalid_token") -> NotAuthorizedException:
    return NotAuthorizedException(detail=detail, headers={"WWW-Authenticate": challenge(error, detail)})


class BearerAuthMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    def __init__(self, verifier: TokenVerifier, max_token_bytes: int) -> None:
        self._verifier = verifier
        self.max_header_bytes = max_token_bytes + len(b"Bearer ")

    @staticmethod
    def should_bypass_for_scope(scope: Scope) -> bool:
        # CORS preflights carry no credentials by design; the OPTIONS handler reveals only "Allow".
        return scope.get("method") == "OPTIONS" or EXEMPT_PATHS.match(scope["path"]) is not None

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        token = bearer_token(scope, self.max_header_bytes)
        try:
            identity = await self._verifier.verify(token)
        except TokenError as exc:
            raise _refuse(exc.detail) from None
        set_client_identity(scope, identity)
        require_scopes(scope)
        await next_app(scope, receive, send)


def bearer_token(scope: Scope, max_header_bytes: int) -> str:
    """The request's one bearer token (RFC 6750 header form); a 401 refusal otherwise."""
    query = scope.get("query_string", b"")
    if b"access_token" in query and any(
        name == "access_token" for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    ):
        raise _refuse("tokens in the query string are refused: send an Authorization header", "invalid_request")
    found: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if found is not None:
                raise _refuse("more than one Authorization header", "invalid_request")
            found = value
    return parse_bearer(found, max_header_bytes)


def parse_bearer(found: bytes | None, max_header_bytes: int) -> str:
    """The token of the request's one ``Authorization`` header value; a 401 refusal otherwise."""
    if found is None:
        raise _refuse("a bearer token is required", None)
    if len(found) > max_header_bytes:
        raise _refuse("the token is too large")
    match = _BEARER.match(found)
    if match is None:
        scheme = _SCHEME.match(found)
        if scheme is not None and scheme.group().lower() != b"bearer":
            raise _refuse("only Bearer tokens are accepted", None)
        raise _refuse("the Authorization header is not a bearer token")
    return match.group(1).decode("ascii")
