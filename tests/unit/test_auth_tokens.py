"""TokenVerifier: identity from claims, and the cache of verified tokens."""

from __future__ import annotations

import time
from typing import Any

import pytest
from joserfc.jwk import Key, RSAKey

from gateway.auth.devkeys import dev_jwks, mint_token
from gateway.auth.jwks import KeySource, StaticKeys
from gateway.auth.settings import DEV_ISSUER, AuthSettings
from gateway.auth.tokens import TokenError, TokenVerifier


class CountingKeys(KeySource):
    """Counts key lookups: a lookup happens only when a token is really verified."""

    def __init__(self, key: RSAKey) -> None:
        self.inner = StaticKeys(dev_jwks(key))
        self.lookups = 0

    async def find(self, kid: str | None, alg: str) -> Key | None:
        self.lookups += 1
        return await self.inner.find(kid, alg)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _verifier(key: RSAKey, clock: Clock, **settings: Any) -> tuple[TokenVerifier, CountingKeys]:
    keys = CountingKeys(key)
    verifier = TokenVerifier(AuthSettings(dev_mode=True, **settings), keys, clock=clock)
    return verifier, keys


def _token(key: RSAKey, clock: Clock, ttl: int = 60, **claims: Any) -> str:
    return mint_token(
        key,
        issuer=DEV_ISSUER,
        audience="erp-gateway",
        client_id=claims.pop("client_id", "shop"),
        scopes=claims.pop("scopes", ["availability:read"]),
        ttl=ttl,
        now=clock.now,
        extra_claims=claims,
    )


async def test_identity_comes_from_the_claims(dev_key: RSAKey) -> None:
    clock = Clock()
    verifier, _ = _verifier(dev_key, clock)
    identity = await verifier.verify(_token(dev_key, clock, scopes=["a:b", "c:d"], client_class="premium"))
    assert identity.client_id == "shop"
    assert identity.scopes == frozenset({"a:b", "c:d"})
    assert identity.client_class == "premium"


async def test_client_class_mapping_wins_over_the_claim_and_default_is_default(dev_key: RSAKey) -> None:
    clock = Clock()
    verifier, _ = _verifier(dev_key, clock, client_classes="shop=internal, partner-x=partner")
    assert (await verifier.verify(_token(dev_key, clock, client_class="premium"))).client_class == "internal"
    assert (await verifier.verify(_token(dev_key, clock, client_id="other"))).client_class == "default"


async def test_azp_and_scp_of_other_identity_providers(dev_key: RSAKey) -> None:
    clock = Clock()
    verifier, _ = _verifier(dev_key, clock)
    claims = {"client_id": None, "azp": "entra-app", "scope": None, "scp": ["x:y", "z:w"]}
    token = mint_token(
        dev_key, issuer=DEV_ISSUER, audience="erp-gateway", client_id="sub", scopes=[], extra_claims=claims
    )
    identity = await verifier.verify(token)
    assert identity.client_id == "entra-app"
    assert identity.scopes == frozenset({"x:y", "z:w"})


async def test_a_repeated_token_is_verified_once(dev_key: RSAKey) -> None:
    clock = Clock()
    verifier, keys = _verifier(dev_key, clock)
    token = _token(dev_key, clock)
    for _ in range(100):
        await verifier.verify(token)
    assert keys.lookups == 1


async def test_a_cached_token_still_expires(dev_key: RSAKey) -> None:
    clock = Clock()
    verifier, keys = _verifier(dev_key, clock, leeway_seconds=5)
    token = _token(dev_key, clock, ttl=60)
    assert verifier.cached(token) is None  # never verified: the hot path must not take it
    await verifier.verify(token)
    clock.now += 64  # inside the leeway: still good, from the cache
    await verifier.verify(token)
    assert verifier.cached(token) is not None
    assert keys.lookups == 1
    clock.now += 2  # past exp + leeway
    assert verifier.cached(token) is None
    with pytest.raises(TokenError, match="expired"):
        await verifier.verify(token)


async def test_the_cache_is_bounded_lru(dev_key: RSAKey) -> None:
    clock = Clock()
    verifier, keys = _verifier(dev_key, clock, token_cache_size=2)
    first, second, third = (_token(dev_key, clock, client_id=f"c{i}") for i in range(3))
    await verifier.verify(first)
    await verifier.verify(second)
    await verifier.verify(first)  # first is now the most recently used
    await verifier.verify(third)  # evicts second
    assert keys.lookups == 3
    await verifier.verify(first)
    assert keys.lookups == 3
    await verifier.verify(second)
    assert keys.lookups == 4


async def test_cache_off_and_forget_all(dev_key: RSAKey) -> None:
    clock = Clock()
    verifier, keys = _verifier(dev_key, clock, token_cache_size=0)
    token = _token(dev_key, clock)
    await verifier.verify(token)
    await verifier.verify(token)
    assert keys.lookups == 2
    cached, cached_keys = _verifier(dev_key, clock)
    await cached.verify(token)
    cached.forget_all()
    await cached.verify(token)
    assert cached_keys.lookups == 2


async def test_failures_are_never_cached(dev_key: RSAKey) -> None:
    clock = Clock()
    verifier, keys = _verifier(dev_key, clock)
    token = _token(dev_key, clock, aud="someone-else")
    for _ in range(2):
        with pytest.raises(TokenError, match="aud"):
            await verifier.verify(token)
    assert keys.lookups == 2


async def test_an_absurd_exp_does_not_overflow(dev_key: RSAKey) -> None:
    clock = Clock()
    verifier, _ = _verifier(dev_key, clock)
    assert (await verifier.verify(_token(dev_key, clock, exp=10**400))).client_id == "shop"


async def test_no_keys_loaded_is_a_token_error(dev_key: RSAKey) -> None:
    clock = Clock()
    verifier = TokenVerifier(AuthSettings(dev_mode=True), None, clock=clock)
    with pytest.raises(TokenError, match="not loaded"):
        await verifier.verify(_token(dev_key, clock))
