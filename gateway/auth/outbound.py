"""Outbound credentials for ERPs: secrets from the environment or secret files, and an OAuth2
client-credentials ``httpx.Auth`` for ERP APIs behind an authorization server.

An adapter's settings embed ``ClientCredentialsSettings``; its ``httpx.AsyncClient`` gets
``auth=ClientCredentialsAuth(settings)``. The token is fetched on first use and again shortly
before it expires (or once after a 401), through the same client, so tests swap the transport
and production code never sees a token. The protocol pieces (client authentication, the token
request, expiry) are authlib's; secrets are ``Secret`` values whose repr never shows them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator
from pathlib import Path
from typing import Literal

import httpx
import msgspec
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749 import OAuth2Token
from authlib.oauth2.rfc6749.parameters import prepare_token_request

__all__ = ["ClientCredentialsAuth", "ClientCredentialsSettings", "Secret", "TokenEndpointError", "read_secret"]


class Secret:
    """A credential that never shows up in logs, reprs or tracebacks' locals."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


def read_secret(value: str, file: str, name: str) -> Secret:
    """A secret given inline (``name``, e.g. from an environment variable) or in a file (``name_file``,
    e.g. a mounted Docker/Kubernetes secret); the file wins, a trailing newline is dropped."""
    if file:
        try:
            return Secret(Path(file).read_text(encoding="utf-8").rstrip("\r\n"))
        except OSError as exc:
            raise ValueError(f"invalid setting: {name}_file: cannot read {file} ({exc.strerror})") from None
    return Secret(value)


class ClientCredentialsSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """OAuth2 client credentials (RFC 6749 section 4.4) for calling an ERP API."""

    #: The authorization server's token endpoint.
    token_url: str = ""
    #: This gateway's client id at the authorization server.
    client_id: str = ""
    #: The client secret, inline (prefer ``client_secret_file``).
    client_secret: str = ""
    #: A file holding the client secret (a mounted secret); wins over ``client_secret``.
    client_secret_file: str = ""
    #: Scopes to ask for, space-separated.
    scope: str = ""
    #: ``audience`` parameter some servers (Auth0) need.
    audience: str = ""
    #: How the client authenticates at the token endpoint.
    auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    #: Seconds before expiry at which the token is renewed.
    leeway_seconds: int = 60

    def __repr__(self) -> str:  # the inline secret must not reach a log through a settings dump
        return f"ClientCredentialsSettings(token_url={self.token_url!r}, client_id={self.client_id!r}, secret=***)"


class TokenEndpointError(httpx.HTTPError):
    """The authorization server refused or failed to issue a token (never carries the secret)."""


class ClientCredentialsAuth(httpx.Auth):
    """``httpx.Auth`` that sends ``Authorization: Bearer`` with a client-credentials token."""

    requires_response_body = False

    def __init__(self, settings: ClientCredentialsSettings, secret: Secret | None = None) -> None:
        if not settings.token_url or not settings.client_id:
            raise ValueError("invalid setting: token_url and client_id are required for client credentials")
        self._settings = settings
        secret = secret or read_secret(settings.client_secret, settings.client_secret_file, "client_secret")
        self._client_auth = ClientAuth(settings.client_id, secret.reveal(), settings.auth_method)
        self._token: OAuth2Token | None = None
        self._lock: asyncio.Lock | None = None
        #: Tokens fetched so far (observability and tests).
        self.fetches = 0

    def __repr__(self) -> str:
        return f"ClientCredentialsAuth(client_id={self._settings.client_id!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("ClientCredentialsAuth works with httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        self._lock = self._lock or asyncio.Lock()
        fresh = False
        async with self._lock:
            if self._token is None or self._token.is_expired(leeway=self._settings.leeway_seconds):
                self._token = await self._fetch((yield self._token_request()))
                fresh = True
        request.headers["Authorization"] = f"Bearer {self._token['access_token']}"
        response = yield request
        if response.status_code == 401 and not fresh:
            # Revoked or rotated early: one new token, one retry.
            async with self._lock:
                self._token = await self._fetch((yield self._token_request()))
            request.headers["Authorization"] = f"Bearer {self._token['access_token']}"
            yield request

    def _token_request(self) -> httpx.Request:
        extra = {k: v for k, v in (("scope", self._settings.scope), ("audience", self._settings.audience)) if v}
        body = prepare_token_request("client_credentials", **extra)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        url, headers, body = self._client_auth.prepare("POST", self._settings.token_url, headers, body)
        return httpx.Request("POST", url, headers=headers, content=body.encode("utf-8"))

    async def _fetch(self, response: httpx.Response) -> OAuth2Token:
        await response.aread()
        self.fetches += 1
        if response.status_code != 200:
            error = _field(response, "error") or f"HTTP {response.status_code}"
            raise TokenEndpointError(f"token endpoint {self._settings.token_url} refused client credentials: {error}")
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict) or not isinstance(document.get("access_token"), str):
            raise TokenEndpointError(f"token endpoint {self._settings.token_url} sent no access_token")
        if str(document.get("token_type", "bearer")).lower() != "bearer":
            raise TokenEndpointError(f"token endpoint {self._settings.token_url} sent a non-bearer token")
        token: OAuth2Token = OAuth2Token.from_dict(document)
        return token


def _field(response: httpx.Response, name: str) -> str | None:
    try:
        value = response.json().get(name)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and len(value) < 100 else None
