"""Access-token verification (RFC 9068 JWT profile) with joserfc, and a cache of verified tokens.

A token is accepted when it is a compact JWS (never a JWE, never ``alg: none``) signed with an
allow-listed asymmetric algorithm by a key from the ``KeySource``, its ``typ`` is an access-token
type, and ``iss``, ``aud``, ``exp`` (required), ``nbf`` and ``iat`` hold within the leeway.
joserfc also refuses ``crit`` extensions it does not understand and unregistered headers.

Verifying a signature blocks the event loop (tens of microseconds for RS256, far more for EC),
so verified tokens are kept in a bounded LRU keyed by the raw token until they expire: a client
that reuses its token, as OAuth2 clients do, costs one dict lookup per request.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgspec
from joserfc import jws
from joserfc.errors import ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwt import JWTClaimsRegistry

from gateway.auth.jwks import KeySource
from gateway.auth.settings import AuthSettings
from gateway.identity import ClientIdentity

__all__ = ["TokenError", "TokenVerifier"]

log = logging.getLogger("erp_gateway.auth")

_CLIENT_ID = re.compile(r"^[\x21-\x7e]{1,256}$")
#: A quota class or sales channel a token names.
_SHORT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")  # RFC 6749 scope-token
_MAX_SCOPES = 64
_MAX_KID = 256
_FAR_FUTURE = 2**40


class TokenError(Exception):
    """The token is not acceptable; ``detail`` is safe to show the caller."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TokenVerifier:
    """Verifies bearer tokens and turns them into a ``ClientIdentity``."""

    def __init__(
        self,
        settings: AuthSettings,
        keys: KeySource | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self._settings = settings
        self._algorithms = settings.algorithm_list
        self._registry = jws.JWSRegistry(algorithms=self._algorithms)
        self._types = settings.token_type_list
        self._leeway = settings.leeway_seconds
        self._issuer = settings.effective_issuer
        self._client_id_claims = settings.client_id_claim_list
        self._class_claim = settings.client_class_claim
        self._channel_claim = settings.channel_claim
        self._classes = settings.client_class_map
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, ClientIdentity]] = OrderedDict()
        self._cache_size = settings.token_cache_size
        self._claims = JWTClaimsRegistry(
            now=lambda: int(self._clock()),
            leeway=self._leeway,
            iss={"essential": True, "value": self._issuer},
            aud={"essential": True, "value": settings.audience},
            exp={"essential": True},
        )

    def forget_all(self) -> None:
        """Drop every cached verification (the signing keys changed)."""
        self._cache.clear()

    def cached(self, token: str) -> ClientIdentity | None:
        """The caller of a token verified before and not expired since; None: ``verify`` it."""
        cached = self._cache.get(token)
        if cached is None:
            return None
        if self._clock() < cached[0]:
            self._cache.move_to_end(token)
            return cached[1]
        del self._cache[token]
        return None

    async def verify(self, token: str) -> ClientIdentity:
        """The caller a valid token names; ``TokenError`` otherwise."""
        cached = self.cached(token)
        if cached is not None:
            return cached
        expires, identity = await self._verify(token)
        if self._cache_size:
            self._cache[token] = (expires, identity)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return identity

    async def _verify(self, token: str) -> tuple[float, ClientIdentity]:
        segments = token.count(".")
        if segments == 4:
            raise TokenError("encrypted tokens (JWE) are not accepted")
        if segments != 2:
            raise TokenError("the token is not a signed JWT")
        try:
            compact = jws.extract_compact(token.encode("ascii"), registry=self._registry)
            header = compact.headers()
        except (JoseError, ValueError, TypeError, UnicodeError) as exc:
            raise TokenError("the token is malformed") from exc
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise TokenError("the token's signature algorithm is not accepted")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower().removeprefix("application/") not in self._types:
            raise TokenError("the token is not an access token (typ)")
        if "crit" in header or "b64" in header:
            raise TokenError("the token uses header extensions that are not accepted (crit, b64)")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or not 0 < len(kid) <= _MAX_KID):
            raise TokenError("the token's key id is not acceptable")
        if self.keys is None:
            raise TokenError("signing keys are not loaded yet")
        key = await self.keys.find(kid, alg)
        if key is None:
            raise TokenError("the token was not signed by a trusted key")
        try:
            valid = jws.validate_compact(compact, key, self._algorithms, self._registry)
        except JoseError as exc:
            raise TokenError("the token's header is not acceptable") from exc
        if not valid:
            raise TokenError("the token's signature is invalid")
        try:
            claims = msgspec.json.decode(compact.payload)
        except msgspec.DecodeError as exc:
            raise TokenError("the token's claims are not JSON") from exc
        if not isinstance(claims, dict):
            raise TokenError("the token's claims are not a JSON object")
        try:
            self._claims.validate(claims)
        except ExpiredTokenError as exc:
            raise TokenError("the token has expired") from exc
        except MissingClaimError as exc:
            raise TokenError(f"the token lacks a required claim ({exc.description})") from exc
        except JoseError as exc:
            raise TokenError(f"the token's claims are not acceptable ({exc.description})") from exc
        identity = self._identity(claims)
        # exp is a finite number here (joserfc checked it); min() keeps a 10**400 from overflowing float().
        return float(min(claims["exp"], _FAR_FUTURE)) + self._leeway, identity

    def _identity(self, claims: dict[str, Any]) -> ClientIdentity:
        client_id = next((claims[c] for c in self._client_id_claims if claims.get(c) is not None), None)
        if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
            raise TokenError(f"the token names no client ({' or '.join(self._client_id_claims)})")
        claimed_class = claims.get(self._class_claim)
        if claimed_class is not None and (not isinstance(claimed_class, str) or not _SHORT_NAME.match(claimed_class)):
            raise TokenError(f"the token's {self._class_claim} claim is not acceptable")
        client_class = self._classes.get(client_id) or claimed_class or "default"
        channel = claims.get(self._channel_claim) if self._channel_claim else None
        if channel is not None and (not isinstance(channel, str) or not _SHORT_NAME.match(channel)):
            raise TokenError(f"the token's {self._channel_claim} claim is not acceptable")
        return ClientIdentity(
            client_id=client_id, client_class=client_class, scopes=self._scopes(claims), channel=channel
        )

    @staticmethod
    def _scopes(claims: dict[str, Any]) -> frozenset[str]:
        # RFC 9068 ``scope`` is a space-separated string; Entra ID and some others send ``scp``.
        raw = claims.get("scope")
        if raw is None:
            raw = claims.get("scp")
        if raw is None:
            return frozenset()
        words = raw.split(" ") if isinstance(raw, str) else raw
        if not isinstance(words, list) or len(words) > _MAX_SCOPES:
            raise TokenError("the token's scope claim is not acceptable")
        scopes = frozenset(w for w in words if w != "")
        if not all(isinstance(w, str) and _SCOPE_TOKEN.match(w) for w in scopes):
            raise TokenError("the token's scope claim is not acceptable")
        return scopes
