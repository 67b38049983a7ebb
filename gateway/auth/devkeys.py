"""Dev mode: a locally generated RSA key the gateway trusts, and tokens signed with it.

The key is created once, on first use, as a private JWK in ``auth.dev_key_path`` readable by
its owner only (0600), so ``erp-gateway token`` and ``erp-gateway serve`` (every worker) agree
on it. RS256 because it is the cheapest signature to verify. Never use this in production:
whoever can read the file can mint any scope.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

__all__ = ["DEV_ALGORITHM", "dev_jwks", "load_or_create_dev_key", "mint_token"]

DEV_ALGORITHM = "RS256"
_KEY_BITS = 2048


def load_or_create_dev_key(path: Path) -> RSAKey:
    """The dev signing key at ``path``, generated (mode 0600) when the file does not exist yet."""
    try:
        return _load(path)
    except FileNotFoundError:
        pass
    key = RSAKey.generate_key(_KEY_BITS, private=True)
    document = {**key.as_dict(private=True), "kid": key.thumbprint(), "use": "sig", "alg": DEV_ALGORITHM}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle)
    try:
        # link() fails if another process created the key meanwhile: then both use that one.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return _load(path)


def _load(path: Path) -> RSAKey:
    document = json.loads(path.read_text(encoding="utf-8"))
    return RSAKey.import_key(document, {"kid": document["kid"], "use": "sig", "alg": DEV_ALGORITHM})


def dev_jwks(key: RSAKey) -> list[dict[str, Any]]:
    """The public JWKS ``keys`` array of the dev key."""
    return [{**key.as_dict(private=False), "kid": key.kid, "use": "sig", "alg": DEV_ALGORITHM}]


def mint_token(
    key: RSAKey,
    *,
    issuer: str,
    audience: str,
    client_id: str,
    scopes: Iterable[str],
    ttl: int = 3600,
    client_class: str | None = None,
    now: float | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """An RFC 9068 access token for ``client_id`` with ``scopes``, signed with the dev key."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": client_id,
        "client_id": client_id,
        "scope": " ".join(scopes),
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl,
        "jti": uuid.uuid4().hex,
    }
    if client_class:
        claims["client_class"] = client_class
    claims.update(extra_claims or {})
    return jwt.encode({"alg": DEV_ALGORITHM, "kid": key.kid, "typ": "at+jwt"}, claims, key, algorithms=[DEV_ALGORITHM])
