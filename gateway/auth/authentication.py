"""``Authentication``: the token verifier, the middleware that checks bearer tokens with it, and
the lifespan that gives it signing keys (the dev key, or the identity provider's JWKS)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from gateway.auth.devkeys import dev_jwks, load_or_create_dev_key
from gateway.auth.jwks import KeySource, RemoteJwks, StaticKeys
from gateway.auth.middleware import BearerAuthMiddleware
from gateway.auth.settings import AuthSettings
from gateway.auth.tokens import TokenVerifier

__all__ = ["Authentication"]

log = logging.getLogger("erp_gateway.auth")

_DEV_MODE_BANNER = (
    "AUTH DEV MODE IS ON: the gateway trusts tokens signed with the local key %s, which anyone who can read "
    "that file can mint with any scope. Never run this in production: set ERPGW_AUTH__JWKS_URL and "
    "ERPGW_AUTH__ISSUER and leave ERPGW_AUTH__DEV_MODE off."
)


class Authentication:
    """The token verifier, its middleware, and the lifespan that gives it signing keys."""

    def __init__(self, settings: AuthSettings, keys: KeySource | None = None) -> None:
        self.settings = settings
        self.verifier = TokenVerifier(settings)
        self.middleware = BearerAuthMiddleware(self.verifier, settings.max_token_bytes)
        self._keys = keys

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        source = self._keys or self._key_source()
        await source.start()
        self.verifier.keys = source
        try:
            yield
        finally:
            self.verifier.keys = None
            self.verifier.forget_all()
            await source.aclose()

    def _key_source(self) -> KeySource:
        settings = self.settings
        if settings.dev_mode:
            path = Path(settings.dev_key_path)
            key = load_or_create_dev_key(path)
            log.warning(_DEV_MODE_BANNER, path)
            return StaticKeys(dev_jwks(key))
        settings.check_startup()  # the same checks `erp-gateway serve` ran before forking
        client = httpx.AsyncClient(timeout=settings.jwks_timeout_seconds, follow_redirects=False)
        return RemoteJwks(
            settings.jwks_url,
            client,
            refresh_seconds=settings.jwks_refresh_seconds,
            min_refetch_seconds=settings.jwks_min_refetch_seconds,
            on_change=self.verifier.forget_all,
        )
