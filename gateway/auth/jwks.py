"""Where the verifier finds signing keys: the identity provider's JWKS, fetched and cached.

``RemoteJwks`` fetches the key set at startup, again when it is older than the refresh period,
and again when a token names an unknown ``kid`` (key rotation) - but never more often than the
minimum refetch interval, so forged ``kid``s cannot make the gateway hammer the IdP, and never
once per request. ``StaticKeys`` serves a fixed set (dev mode, tests).

Only public signature keys of asymmetric types are kept: a JWKS entry that is symmetric
(``oct``), meant for encryption (``use: enc``), private, malformed or an RSA key under 2048
bits is dropped, so a ``kid`` pointing at one is simply unknown.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

__all__ = ["KeySource", "RemoteJwks", "StaticKeys", "usable_keys"]

log = logging.getLogger("erp_gateway.auth")

#: Key type and curve each algorithm needs.
_ALG_KEY: dict[str, tuple[str, str | None]] = {
    **{alg: ("RSA", None) for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "Ed25519": ("OKP", "Ed25519"),
}
_IMPORTERS: dict[str, Callable[[Any], Key]] = {
    "RSA": RSAKey.import_key,
    "EC": ECKey.import_key,
    "OKP": OKPKey.import_key,
}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_MAX_JWKS_BYTES = 1024 * 1024
_MIN_RSA_BITS = 2048


def usable_keys(jwks: Iterable[Any]) -> dict[str | None, list[Key]]:
    """Public asymmetric signature keys of a JWKS ``keys`` array, grouped by ``kid``."""
    out: dict[str | None, list[Key]] = {}
    for entry in jwks:
        if not isinstance(entry, Mapping):
            continue
        kty = entry.get("kty")
        kid = entry.get("kid")
        if kty not in _IMPORTERS or entry.get("use", "sig") != "sig" or (kid is not None and not isinstance(kid, str)):
            continue
        if kty == "RSA" and _rsa_bits(entry.get("n")) < _MIN_RSA_BITS:
            log.warning("JWKS: skipping RSA key %r shorter than %d bits", kid, _MIN_RSA_BITS)
            continue
        public = {k: v for k, v in entry.items() if k not in _PRIVATE_MEMBERS}
        try:
            key = _IMPORTERS[kty](public)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            log.warning("JWKS: skipping malformed key %r: %s", kid, type(exc).__name__)
            continue
        out.setdefault(kid, []).append(key)
    return out


def _rsa_bits(modulus: object) -> int:
    """Bit length of a base64url RSA modulus (checked before import: joserfc warns on weak keys)."""
    if not isinstance(modulus, str):
        return 0
    try:
        raw = base64.urlsafe_b64decode(modulus + "=" * (-len(modulus) % 4))
    except ValueError:
        return 0
    return int.from_bytes(raw, "big").bit_length()


def _fits(key: Key, alg: str) -> bool:
    kty, curve = _ALG_KEY.get(alg, ("", None))
    return key.key_type == kty and (curve is None or key.get("crv") == curve)


class KeySource(ABC):
    """Finds the public key that should have signed a token."""

    @abstractmethod
    async def find(self, kid: str | None, alg: str) -> Key | None:
        """The key named ``kid`` (or the only fitting key when the token names none) usable with ``alg``."""

    async def start(self) -> None:  # noqa: B027 - optional hook, most sources have nothing to load
        """Load keys before the first request (default: nothing to load)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what ``start`` opened."""

    @staticmethod
    def _pick(keys: Mapping[str | None, list[Key]], kid: str | None, alg: str) -> Key | None:
        if kid is not None:
            fitting = [k for k in keys.get(kid, ()) if _fits(k, alg)]
        else:
            fitting = [k for group in keys.values() for k in group if _fits(k, alg)]
        # A token without kid is accepted only when exactly one key could have signed it.
        return fitting[0] if len(fitting) == 1 else None


class StaticKeys(KeySource):
    """A fixed key set: the dev-mode key, or keys a test made."""

    def __init__(self, jwks: Iterable[Any]) -> None:
        self._keys = usable_keys(jwks)

    async def find(self, kid: str | None, alg: str) -> Key | None:
        return self._pick(self._keys, kid, alg)


class RemoteJwks(KeySource):
    """The identity provider's JWKS over HTTPS, cached, refreshed, refetched on unknown ``kid``."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        refresh_seconds: float,
        min_refetch_seconds: float,
        on_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._client = client
        self._refresh = refresh_seconds
        self._min_refetch = min_refetch_seconds
        self._on_change = on_change
        self._clock = clock
        self._keys: dict[str | None, list[Key]] = {}
        self._fingerprint: frozenset[str] = frozenset()
        self._loaded_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        #: Number of HTTP fetches made (observability and tests).
        self.fetches = 0

    async def start(self) -> None:
        await self.refetch()
        if self._loaded_at is None:
            log.error("JWKS: could not load signing keys from %s; every token is refused until it answers", self.url)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def find(self, kid: str | None, alg: str) -> Key | None:
        key = self._pick(self._keys, kid, alg)
        stale = self._loaded_at is None or self._clock() - self._loaded_at >= self._refresh
        if key is not None and (not stale or self._lock.locked()):
            return key  # a refresh in flight does not hold up tokens signed with a known key
        await self.refetch()
        return self._pick(self._keys, kid, alg)

    async def refetch(self) -> None:
        """Fetch the key set, unless a fetch started less than the minimum interval ago."""
        async with self._lock:
            now = self._clock()
            if self._attempted_at is not None and now - self._attempted_at < self._min_refetch:
                return
            self._attempted_at = now
            self.fetches += 1
            try:
                response = await self._client.get(self.url, headers={"Accept": "application/json"})
                response.raise_for_status()
                if len(response.content) > _MAX_JWKS_BYTES:
                    raise ValueError("JWKS document too large")
                document = response.json()
                entries = document["keys"] if isinstance(document, dict) else None
                if not isinstance(entries, list):
                    raise ValueError("JWKS document has no 'keys' array")
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                log.warning("JWKS: fetch from %s failed (%s); keeping %d known keys", self.url, exc, len(self._keys))
                return
            keys = usable_keys(entries)
            fingerprint = frozenset(k.thumbprint() for group in keys.values() for k in group)
            changed = fingerprint != self._fingerprint
            self._keys, self._fingerprint, self._loaded_at = keys, fingerprint, now
            if changed:
                log.info("JWKS: %d signing keys loaded from %s", len(fingerprint), self.url)
                if self._on_change is not None:
                    self._on_change()
