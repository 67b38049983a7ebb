"""RemoteJwks: fetched once, cached, refetched on unknown kid at a bounded rate, rotation-safe."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey, OctKey, RSAKey

from gateway.auth.devkeys import mint_token
from gateway.auth.jwks import RemoteJwks, StaticKeys, usable_keys
from gateway.auth.settings import AuthSettings
from gateway.auth.tokens import TokenError, TokenVerifier

URL = "https://idp.example.com/realms/retail/protocol/openid-connect/certs"
ISSUER = "https://idp.example.com/realms/retail"


def _public(key: Any, kid: str) -> dict[str, Any]:
    return {**key.as_dict(private=False), "kid": kid, "use": "sig"}


class FakeIdp:
    """Serves a JWKS document through httpx.MockTransport and counts the fetches."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.down = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url) == URL
        self.fetches += 1
        if self.down:
            return httpx.Response(503)
        return httpx.Response(200, json={"keys": self.keys})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def idp_key() -> RSAKey:
    return RSAKey.generate_key(2048, private=True, parameters={"kid": "k1"})


@pytest.fixture(scope="module")
def rotated_key() -> RSAKey:
    return RSAKey.generate_key(2048, private=True, parameters={"kid": "k2"})


def _token(key: RSAKey) -> str:
    return mint_token(key, issuer=ISSUER, audience="erp-gateway", client_id="shop", scopes=["availability:read"])


def _jwks(idp: FakeIdp, clock: Clock, verifier: TokenVerifier | None = None) -> RemoteJwks:
    return RemoteJwks(
        URL,
        idp.client(),
        refresh_seconds=3600,
        min_refetch_seconds=30,
        on_change=verifier.forget_all if verifier else None,
        clock=clock,
    )


async def test_keys_are_fetched_once_at_start(idp_key: RSAKey) -> None:
    idp, clock = FakeIdp(_public(idp_key, "k1")), Clock()
    jwks = _jwks(idp, clock)
    await jwks.start()
    for _ in range(50):
        assert await jwks.find("k1", "RS256") is not None
    assert idp.fetches == 1
    await jwks.aclose()


async def test_unknown_kid_refetches_at_most_once_per_interval(idp_key: RSAKey) -> None:
    idp, clock = FakeIdp(_public(idp_key, "k1")), Clock()
    jwks = _jwks(idp, clock)
    await jwks.start()
    clock.now += 31
    for i in range(20):
        assert await jwks.find(f"forged-{i}", "RS256") is None
    assert idp.fetches == 2  # one refetch for twenty unknown kids
    clock.now += 31
    assert await jwks.find("forged-x", "RS256") is None
    assert idp.fetches == 3


async def test_rotation_is_picked_up_and_clears_the_token_cache(idp_key: RSAKey, rotated_key: RSAKey) -> None:
    idp, clock = FakeIdp(_public(idp_key, "k1")), Clock()
    verifier = TokenVerifier(AuthSettings(issuer=ISSUER, jwks_url=URL))
    jwks = _jwks(idp, clock, verifier)
    verifier.keys = jwks
    await jwks.start()
    assert (await verifier.verify(_token(idp_key))).client_id == "shop"
    idp.keys = [_public(rotated_key, "k2")]  # k1 revoked, k2 new
    clock.now += 31
    assert (await verifier.verify(_token(rotated_key))).client_id == "shop"
    with pytest.raises(TokenError):
        await verifier.verify(_token(idp_key))  # was cached: the key change dropped the cache


async def test_stale_keys_are_refreshed_and_kept_when_the_idp_is_down(idp_key: RSAKey) -> None:
    idp, clock = FakeIdp(_public(idp_key, "k1")), Clock()
    jwks = _jwks(idp, clock)
    await jwks.start()
    idp.down = True
    clock.now += 3601
    assert await jwks.find("k1", "RS256") is not None  # refetch failed: known keys stay
    assert idp.fetches == 2


async def test_an_idp_down_at_start_is_survived(idp_key: RSAKey) -> None:
    idp, clock = FakeIdp(_public(idp_key, "k1")), Clock()
    idp.down = True
    jwks = _jwks(idp, clock)
    await jwks.start()
    assert await jwks.find("k1", "RS256") is None
    idp.down = False
    clock.now += 31
    assert await jwks.find("k1", "RS256") is not None


def test_only_public_asymmetric_signature_keys_are_used(idp_key: RSAKey) -> None:
    weak = {"kty": "RSA", "n": base64.urlsafe_b64encode(b"\xc3" * 128).decode().rstrip("="), "e": "AQAB"}
    keys = usable_keys(
        [
            _public(idp_key, "rsa"),
            {**OctKey.generate_key(256).as_dict(), "kid": "hmac"},
            {**_public(ECKey.generate_key("P-256"), "enc"), "use": "enc"},
            {**weak, "kid": "weak"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            {**idp_key.as_dict(private=True), "kid": "leaked-private"},
            "not a key",
        ]
    )
    assert sorted(k or "" for k in keys) == ["leaked-private", "rsa"]
    assert not keys["leaked-private"][0].is_private


async def test_algorithm_must_fit_the_key_type(idp_key: RSAKey) -> None:
    keys = StaticKeys([_public(idp_key, "k1"), _public(ECKey.generate_key("P-256"), "e1")])
    assert await keys.find("k1", "RS256") is not None
    assert await keys.find("k1", "ES256") is None
    assert await keys.find("e1", "ES384") is None
    assert await keys.find(None, "RS256") is not None  # the only RSA key
    both = StaticKeys([_public(idp_key, "k1"), _public(RSAKey.generate_key(2048), "k2")])
    assert await both.find(None, "RS256") is None  # ambiguous without kid
