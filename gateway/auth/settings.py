"""Settings of caller authentication (``[auth]`` in TOML, ``ERPGW_AUTH__*`` in the environment).

List-like settings are space- or comma-separated strings so that one environment variable can
hold them (``ERPGW_AUTH__ALGORITHMS="RS256 ES256"``); ``AuthSettings`` parses them once.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

__all__ = ["ASYMMETRIC_ALGORITHMS", "DEV_ISSUER", "AuthSettings", "split_words"]

#: Issuer of dev-mode tokens when ``issuer`` is left empty.
DEV_ISSUER = "urn:erp-gateway:dev"

#: The signature algorithms the verifier can be allowed to accept. Symmetric (HS*) and
#: ``none`` are deliberately absent: a gateway that trusts an IdP's JWKS never holds a
#: shared secret, and an HMAC allow-listed next to RSA invites key-confusion attacks.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "Ed25519"}
)

_WORDS = re.compile(r"[\s,]+")


def split_words(value: str) -> tuple[str, ...]:
    """``"a b, c"`` -> ``("a", "b", "c")``."""
    return tuple(word for word in _WORDS.split(value) if word)


class AuthSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Bearer-token authentication: OAuth2 access tokens (RFC 9068 JWTs) from an identity provider."""

    #: Trust a locally generated key instead of an identity provider (quickstart only; loud in the logs).
    dev_mode: bool = False
    #: Where dev mode keeps its RSA private key (created once, mode 0600).
    dev_key_path: str = "var/dev-signing-key.json"
    #: Expected ``iss`` claim: the identity provider's issuer URL (dev mode: ``urn:erp-gateway:dev`` if empty).
    issuer: str = ""
    #: Expected ``aud`` claim: the identifier the identity provider gives this API.
    audience: str = "erp-gateway"
    #: The identity provider's JWKS URL (required unless dev mode is on).
    jwks_url: str = ""
    #: Token endpoint shown in the OpenAPI security scheme (documentation only).
    token_url: str = "https://idp.example.com/oauth2/token"  # noqa: S105 - a URL, not a secret
    #: Accepted signature algorithms (asymmetric only), space- or comma-separated.
    algorithms: str = "RS256 PS256 ES256 Ed25519"
    #: Accepted ``typ`` header values (case-insensitive, ``application/`` prefix optional).
    token_types: str = "at+jwt JWT"  # noqa: S105 - JOSE typ values, not a secret
    #: Clock skew tolerated on ``exp``, ``nbf`` and ``iat``, in seconds.
    leeway_seconds: int = 30
    #: Largest accepted token in bytes (larger: 401).
    max_token_bytes: int = 8192
    #: Verified tokens kept in memory until they expire (0 turns the cache off).
    token_cache_size: int = 10_000
    #: Claims naming the calling client, first present wins (RFC 9068 ``client_id``, Keycloak/Entra ``azp``).
    client_id_claims: str = "client_id azp"
    #: Claim carrying the caller's quota class.
    client_class_claim: str = "client_class"
    #: Claim naming the sales channel a token acts for (``web``, ``pos``, ``marketplace``), which
    #: ``routing.channels`` routes on; empty: channels are not read (a token without it: no channel).
    channel_claim: str = ""
    #: Quota class per client id, overriding the claim: ``storefront=premium, helpdesk=internal``.
    client_classes: str = ""
    #: Seconds before the JWKS is fetched again (on the next token that is not in the cache).
    jwks_refresh_seconds: int = 3600
    #: Least seconds between two JWKS fetches (unknown ``kid``s cannot make the gateway hammer the IdP).
    jwks_min_refetch_seconds: int = 30
    #: Timeout of one JWKS fetch, in seconds.
    jwks_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        algorithms = self.algorithm_list
        if not algorithms:
            raise ValueError("auth.algorithms: name at least one algorithm")
        refused = sorted(set(algorithms) - ASYMMETRIC_ALGORITHMS)
        if refused:
            allowed = " ".join(sorted(ASYMMETRIC_ALGORITHMS))
            raise ValueError(f"auth.algorithms: {', '.join(refused)} not accepted; choose from {allowed}")
        if not self.client_id_claim_list:
            raise ValueError("auth.client_id_claims: name at least one claim")
        for name, value in (
            ("max_token_bytes", self.max_token_bytes),
            ("leeway_seconds", self.leeway_seconds),
            ("token_cache_size", self.token_cache_size),
            ("jwks_refresh_seconds", self.jwks_refresh_seconds),
            ("jwks_min_refetch_seconds", self.jwks_min_refetch_seconds),
        ):
            if value < 0:
                raise ValueError(f"auth.{name}: must not be negative")
        if self.max_token_bytes < 256:
            raise ValueError("auth.max_token_bytes: at least 256")
        self.client_class_map  # noqa: B018 - parse now so a bad value stops the start

    def check_startup(self) -> None:
        """What the gateway needs to verify tokens, checked before any worker starts (no network).
        ``ValueError`` names the setting: ``auth.<name>: what to set``."""
        dev = "or set ERPGW_AUTH__DEV_MODE=true to try the gateway with tokens from `erp-gateway token`"
        if self.dev_mode:
            key = Path(self.dev_key_path).absolute()
            if key.exists():
                if key.is_dir() or not os.access(key, os.R_OK):
                    raise ValueError(f"auth.dev_key_path: cannot read {self.dev_key_path}; name a readable file")
                return
            above = next(p for p in key.parents if p.exists())
            if not above.is_dir() or not os.access(above, os.W_OK | os.X_OK):
                raise ValueError(f"auth.dev_key_path: cannot create {self.dev_key_path}; name a writable place")
            return
        if not self.issuer and not self.jwks_url:
            raise ValueError(
                "auth.issuer: no identity provider is configured: set ERPGW_AUTH__ISSUER to its issuer URL "
                f"and ERPGW_AUTH__JWKS_URL to its JWKS URL (README, Authentication), {dev}"
            )
        if not self.issuer:
            raise ValueError(f"auth.issuer: not set: set it to your identity provider's issuer URL, {dev}")
        if not self.jwks_url:
            raise ValueError(f"auth.jwks_url: not set: set it to your identity provider's JWKS URL (https), {dev}")
        parts = urlsplit(self.jwks_url)
        loopback = parts.scheme == "http" and _loopback(parts.hostname or "")
        if not parts.hostname or not (parts.scheme == "https" or loopback):
            raise ValueError(f"auth.jwks_url: {self.jwks_url!r} is not an https URL (http only on loopback)")

    @property
    def algorithm_list(self) -> tuple[str, ...]:
        return split_words(self.algorithms)

    @property
    def token_type_list(self) -> frozenset[str]:
        return frozenset(t.lower().removeprefix("application/") for t in split_words(self.token_types))

    @property
    def client_id_claim_list(self) -> tuple[str, ...]:
        return split_words(self.client_id_claims)

    @property
    def client_class_map(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for pair in split_words(self.client_classes):
            client, sep, klass = pair.partition("=")
            if not sep or not client or not klass:
                raise ValueError(f"auth.client_classes: {pair!r} is not client=class")
            out[client] = klass
        return out

    @property
    def effective_issuer(self) -> str:
        """The ``iss`` tokens must carry."""
        return self.issuer or (DEV_ISSUER if self.dev_mode else "")


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
