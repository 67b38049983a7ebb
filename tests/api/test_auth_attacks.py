"""The attack table: forged, malformed, misplaced and under-scoped credentials.

Every case must be a 401 or 403 RFC 9457 problem with a ``WWW-Authenticate: Bearer``
challenge: never a 2xx, never a 5xx. Tokens are forged with joserfc, as an attacker would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jwe, jws, jwt
from joserfc.jwk import ECKey, OctKey, RSAKey
from litestar import get
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.auth.settings import DEV_ISSUER
from gateway.settings import Settings
from tests.conftest import Mint, assert_problem

AVAILABILITY = "/v1/availability/MUG-SND"


@pytest.fixture(scope="module")
def other_rsa() -> RSAKey:
    return RSAKey.generate_key(2048, private=True)


@pytest.fixture
def anonymous(client: TestClient[Any]) -> Iterator[TestClient[Any]]:
    """The app under attack; no credentials unless a case sends them."""
    del client.headers["Authorization"]
    return client


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(**override: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": DEV_ISSUER,
        "aud": "erp-gateway",
        "sub": "mallory",
        "client_id": "mallory",
        "scope": "availability:read prices:read orders:read orders:read:pii returns:write returns:read admin",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    claims.update(override)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(key: Any, header: dict[str, Any], claims: dict[str, Any], alg: str = "RS256") -> str:
    return jwt.encode({"alg": alg, "typ": "at+jwt", **header}, claims, key, algorithms=[alg])


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return f"{_b64(json.dumps(header))}.{_b64(json.dumps(claims))}.{signature}"


def _hs256_with_public_key(dev_key: RSAKey) -> str:
    """Classic key confusion: HMAC keyed with the RSA public key's PEM."""
    pem = dev_key.as_pem(private=False)
    header = {"alg": "HS256", "typ": "at+jwt", "kid": dev_key.kid}
    signing_input = f"{_b64(json.dumps(header))}.{_b64(json.dumps(_claims()))}"
    signature = _b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    return f"{signing_input}.{signature}"


def _tamper_payload(token: str) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{_b64(json.dumps(_claims(client_id='root')))}.{signature}"


def _flip_signature(token: str) -> str:
    head, _, signature = token.rpartition(".")
    flipped = ("A" if signature[5] != "A" else "B").join((signature[:5], signature[6:]))
    return f"{head}.{flipped}"


def _jwe(dev_key: RSAKey) -> str:
    """The claims encrypted to the gateway's own public key (a JWE is not a signed token)."""
    public = {k: v for k, v in dev_key.as_dict(private=False).items() if k not in ("use", "alg", "key_ops")}
    encryption_key = RSAKey.import_key(public)
    header = {"alg": "RSA-OAEP-256", "enc": "A256GCM"}
    return jwe.encrypt_compact(header, json.dumps(_claims()), encryption_key, algorithms=["RSA-OAEP-256", "A256GCM"])


def _embedded_jwk(dev_key: RSAKey) -> str:
    """Signed by the attacker's EC key, which the header carries as ``jwk`` (must be ignored)."""
    attacker = ECKey.generate_key("P-256")
    header = {"kid": dev_key.kid, "jwk": attacker.as_dict(private=False)}
    return _sign(attacker, header, _claims(), "ES256")


def _raw_rs(key: RSAKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """Signed with the trusted key but built by hand: joserfc refuses to create these headers."""
    header = {"alg": "RS256", "typ": "at+jwt", **header}
    digest = {"RS256": hashes.SHA256(), "RS384": hashes.SHA384(), "RS512": hashes.SHA512()}[header["alg"]]
    signing_input = f"{_b64(json.dumps(header))}.{_b64(json.dumps(claims))}"
    signature = key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), digest)
    return f"{signing_input}.{_b64(signature)}"


Case = tuple[str, Callable[[RSAKey, RSAKey, Mint], dict[str, Any]], int, str | None]


def _bearer(token: str) -> dict[str, Any]:
    return {"headers": {"Authorization": f"Bearer {token}"}}


def _dev(header: dict[str, Any] | None = None, **claims: Any) -> Callable[[RSAKey, RSAKey, Mint], dict[str, Any]]:
    """A token signed by the trusted dev key, with header/claim changes."""
    return lambda dev, other, mint: _bearer(_sign(dev, {"kid": dev.kid, **(header or {})}, _claims(**claims)))


#: (case, how to build the request, expected status, expected RFC 6750 error or None)
CASES: list[Case] = [
    ("no Authorization header", lambda dev, other, mint: {}, 401, None),
    ("empty bearer", lambda dev, other, mint: {"headers": {"Authorization": "Bearer "}}, 401, "invalid_token"),
    ("scheme only", lambda dev, other, mint: {"headers": {"Authorization": "Bearer"}}, 401, "invalid_token"),
    ("Basic credentials", lambda dev, other, mint: {"headers": {"Authorization": "Basic bWFsbG9yeTpwdw=="}}, 401, None),
    ("token without scheme", lambda dev, other, mint: {"headers": {"Authorization": mint()}}, 401, None),
    ("two-part token", lambda dev, other, mint: _bearer("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0"), 401, "invalid_token"),
    ("garbage three-part token", lambda dev, other, mint: _bearer("aaa.bbb.ccc"), 401, "invalid_token"),
    (
        "non-ASCII junk",
        lambda dev, other, mint: {"headers": [("Authorization", "Bearer \u00fc\u00f1\u00ee.\u00e7\u00f8.d".encode())]},
        401,
        "invalid_token",
    ),
    ("header that is not JSON", lambda dev, other, mint: _bearer(f"{_b64('not json')}.{_b64('{}')}.c2ln"), 401, None),
    ("bad signature", lambda dev, other, mint: _bearer(_flip_signature(mint())), 401, "invalid_token"),
    ("payload swapped under a valid signature", lambda dev, other, mint: _bearer(_tamper_payload(mint())), 401, None),
    (
        "alg none",
        lambda dev, other, mint: _bearer(_unsigned({"alg": "none", "typ": "at+jwt"}, _claims())),
        401,
        "invalid_token",
    ),
    (
        "alg None spelled differently",
        lambda dev, other, mint: _bearer(_unsigned({"alg": "NONE", "typ": "at+jwt", "kid": dev.kid}, _claims())),
        401,
        "invalid_token",
    ),
    ("HS256 signed with the public key", lambda dev, other, mint: _bearer(_hs256_with_public_key(dev)), 401, None),
    (
        "HS256 with a guessable secret",
        lambda dev, other, mint: _bearer(_sign(OctKey.import_key(b"secret" * 6), {}, _claims(), "HS256")),
        401,
        "invalid_token",
    ),
    (
        "unknown kid",
        lambda dev, other, mint: _bearer(_sign(other, {"kid": "attacker-key"}, _claims())),
        401,
        "invalid_token",
    ),
    (
        "another key with the trusted kid",
        lambda dev, other, mint: _bearer(_sign(other, {"kid": dev.kid}, _claims())),
        401,
        "invalid_token",
    ),
    ("another key without kid", lambda dev, other, mint: _bearer(_sign(other, {}, _claims())), 401, None),
    (
        "attacker key embedded in the header (jwk)",
        lambda dev, other, mint: _bearer(_embedded_jwk(dev)),
        401,
        "invalid_token",
    ),
    (
        "ES256 by an untrusted EC key",
        lambda dev, other, mint: _bearer(_sign(ECKey.generate_key("P-256"), {"kid": dev.kid}, _claims(), "ES256")),
        401,
        "invalid_token",
    ),
    (
        "RS512: algorithm not allow-listed",
        lambda dev, other, mint: _bearer(_raw_rs(dev, {"alg": "RS512", "kid": dev.kid}, _claims())),
        401,
        "invalid_token",
    ),
    ("expired", _dev(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200, nbf=None), 401, "invalid_token"),
    ("not yet valid (nbf)", _dev(nbf=int(time.time()) + 3600, exp=int(time.time()) + 7200), 401, "invalid_token"),
    ("issued in the future (iat)", _dev(iat=int(time.time()) + 3600), 401, "invalid_token"),
    ("missing exp", _dev(exp=None), 401, "invalid_token"),
    ("exp not a number", _dev(exp="tomorrow"), 401, "invalid_token"),
    ("exp is a boolean", _dev(exp=True), 401, "invalid_token"),
    ("wrong issuer", _dev(iss="https://evil.example.com"), 401, "invalid_token"),
    ("missing issuer", _dev(iss=None), 401, "invalid_token"),
    ("wrong audience", _dev(aud="another-api"), 401, "invalid_token"),
    ("audience list without ours", _dev(aud=["a", "b"]), 401, "invalid_token"),
    ("missing audience", _dev(aud=None), 401, "invalid_token"),
    ("no client id", _dev(client_id=None), 401, "invalid_token"),
    ("client id not a string", _dev(client_id=["a", "b"]), 401, "invalid_token"),
    ("scope claim not a string", _dev(scope=42), 401, "invalid_token"),
    ("client_class injection", _dev(client_class="premium\r\nX-Evil: 1"), 401, "invalid_token"),
    ("wrong typ (id token)", _dev({"typ": "id_token+jwt"}), 401, "invalid_token"),
    ("wrong typ (DPoP proof)", _dev({"typ": "dpop+jwt"}), 401, "invalid_token"),
    (
        "missing typ",
        lambda dev, other, mint: _bearer(
            jwt.encode({"alg": "RS256", "kid": dev.kid}, _claims(), dev, algorithms=["RS256"], default_type=None)
        ),
        401,
        "invalid_token",
    ),
    (
        "crit header",
        lambda dev, other, mint: _bearer(_raw_rs(dev, {"kid": dev.kid, "crit": ["x-ext"], "x-ext": 1}, _claims())),
        401,
        "invalid_token",
    ),
    (
        "b64 false (RFC 7797 unencoded payload)",
        lambda dev, other, mint: _bearer(_raw_rs(dev, {"kid": dev.kid, "b64": False, "crit": ["b64"]}, _claims())),
        401,
        "invalid_token",
    ),
    ("very long kid", _dev({"kid": "k" * 5000}), 401, "invalid_token"),
    (
        "kid not a string",
        lambda dev, other, mint: _bearer(_raw_rs(dev, {"kid": 12}, _claims())),
        401,
        "invalid_token",
    ),
    (
        "validly signed but unknown header parameter",
        lambda dev, other, mint: _bearer(_raw_rs(dev, {"kid": dev.kid, "x-debug": True}, _claims())),
        401,
        "invalid_token",
    ),
    ("JWE instead of JWS", lambda dev, other, mint: _bearer(_jwe(dev)), 401, "invalid_token"),
    (
        "claims are a JSON array",
        lambda dev, other, mint: _bearer(
            jws.serialize_compact({"alg": "RS256", "typ": "at+jwt", "kid": dev.kid}, b"[1,2]", dev, ["RS256"])
        ),
        401,
        "invalid_token",
    ),
    (
        "oversized token (9 KiB)",
        lambda dev, other, mint: _bearer(mint(padding="x" * 9 * 1024)),
        401,
        "invalid_token",
    ),
    (
        "token in the query string",
        lambda dev, other, mint: {"params": {"access_token": mint()}},
        401,
        "invalid_request",
    ),
    (
        "token in the query string next to a valid header",
        lambda dev, other, mint: {"params": {"access_token": mint()}, **_bearer(mint())},
        401,
        "invalid_request",
    ),
    (
        "two Authorization headers (folded by the client into one)",
        lambda dev, other, mint: {"headers": [("Authorization", f"Bearer {mint()}"), ("Authorization", "Bearer x")]},
        401,
        "invalid_token",
    ),
    ("no scope at all", _dev(scope=None), 403, "insufficient_scope"),
    ("scope of another operation", _dev(scope="prices:read orders:read"), 403, "insufficient_scope"),
    ("scope prefix is not the scope", _dev(scope="availability availability:readx"), 403, "insufficient_scope"),
    ("scope with a different case", _dev(scope="AVAILABILITY:READ"), 403, "insufficient_scope"),
    ("scope as an Entra scp list of others", _dev(scope=None, scp=["prices:read"]), 403, "insufficient_scope"),
]


@pytest.mark.parametrize(("name", "build", "status", "error"), CASES, ids=[c[0] for c in CASES])
def test_attack_is_refused(
    anonymous: TestClient[Any],
    dev_key: RSAKey,
    other_rsa: RSAKey,
    mint: Mint,
    name: str,
    build: Callable[[RSAKey, RSAKey, Mint], dict[str, Any]],
    status: int,
    error: str | None,
) -> None:
    response = anonymous.get(AVAILABILITY, **build(dev_key, other_rsa, mint))
    assert_problem(response, status, "unauthorized" if status == 401 else "forbidden")
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="erp-gateway"'), challenge
    if error is not None:
        assert f'error="{error}"' in challenge, challenge
    assert "traceback" not in response.text.lower()


def test_the_table_has_at_least_25_cases() -> None:
    assert len(CASES) >= 25


WRITE_AND_ADMIN = [
    (
        "post",
        "/v1/returns",
        {"orderNumber": "SO-1003", "lines": [{"sku": "HOOD-BLK-L", "quantity": 1}]},
        "returns:read",
    ),
    ("post", "/v1/admin/cache/invalidate", {"skus": ["MUG-SND"]}, "returns:write"),
    ("post", "/v1/prices/check", {"currency": "EUR", "lines": [{"sku": "MUG-SND", "quantity": 1}]}, "orders:validate"),
    ("get", "/v1/orders/SO-1001", None, "orders:read:pii"),
    ("get", "/v1/returns/RMA-000001", None, "returns:write"),
]


@pytest.mark.parametrize(("method", "path", "body", "scope"), WRITE_AND_ADMIN)
def test_a_scope_meant_for_another_operation_is_403(
    anonymous: TestClient[Any], mint: Mint, method: str, path: str, body: Any, scope: str
) -> None:
    headers = {"Authorization": f"Bearer {mint(scope)}", "Idempotency-Key": "attack-key-0001"}
    response = anonymous.request(method.upper(), path, json=body, headers=headers)
    assert_problem(response, 403, "forbidden")
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_lowercase_bearer_scheme_is_accepted(anonymous: TestClient[Any], mint: Mint) -> None:
    # RFC 9110: the auth scheme is case-insensitive.
    assert anonymous.get(AVAILABILITY, headers={"Authorization": f"bearer {mint()}"}).status_code == 200


def test_exempt_paths_need_no_token(anonymous: TestClient[Any]) -> None:
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/readyz").status_code == 200
    assert anonymous.get("/docs/openapi.json").status_code == 200


def test_every_v1_route_requires_a_token(anonymous: TestClient[Any]) -> None:
    spec = anonymous.get("/docs/openapi.json").json()
    for path, operations in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        concrete = path.replace("{sku}", "MUG-SND").replace("{orderNumber}", "SO-1001")
        concrete = concrete.replace("{rmaNumber}", "RMA-000001")
        for method in operations:
            response = anonymous.request(method.upper(), concrete, params={"externalRef": "WC-5001"})
            assert_problem(response, 401, "unauthorized")


def test_an_authenticated_route_without_declared_scopes_is_refused(settings: Settings, mint: Mint) -> None:
    """Fail closed: a /v1 route someone forgets to give a scope is 403, not open."""

    @get("/v1/forgotten", sync_to_thread=False)
    def forgotten() -> dict[str, str]:
        return {"secret": "yes"}

    app = create_app(settings)
    app.register(forgotten)
    with TestClient(app) as test_client:
        assert_problem(test_client.get("/v1/forgotten"), 401, "unauthorized")
        response = test_client.get("/v1/forgotten", headers={"Authorization": f"Bearer {mint()}"})
        assert_problem(response, 403, "forbidden")


def test_problem_bodies_never_echo_the_token(anonymous: TestClient[Any], mint: Mint) -> None:
    token = _flip_signature(mint())
    response = anonymous.get(AVAILABILITY, headers={"Authorization": f"Bearer {token}"})
    assert token not in response.text
    assert token.split(".")[2] not in response.headers["www-authenticate"]


def test_error_description_is_a_valid_quoted_string(anonymous: TestClient[Any]) -> None:
    response = anonymous.get(AVAILABILITY, headers={"Authorization": 'Bearer a"b'})
    challenge = response.headers["www-authenticate"]
    assert challenge.count('"') % 2 == 0


async def test_two_authorization_headers_are_refused(settings: Settings, mint: Mint) -> None:
    """Sent as two separate header lines (the test client would fold them into one)."""
    app = create_app(settings)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as raw:
            token = mint()
            headers = httpx.Headers([("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")])
            response = await raw.get(AVAILABILITY, headers=headers)
    assert_problem(response, 401, "unauthorized")
    assert 'error="invalid_request"' in response.headers["www-authenticate"]
