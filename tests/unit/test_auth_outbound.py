"""Outbound OAuth2 client credentials against a fake token endpoint (httpx.MockTransport)."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from gateway.auth.outbound import (
    ClientCredentialsAuth,
    ClientCredentialsSettings,
    Secret,
    TokenEndpointError,
    read_secret,
)

TOKEN_URL = "https://auth.erp.example.com/oauth/token"
API = "https://erp.example.com/api/stock"


class FakeAuthorizationServer:
    """A token endpoint and an API that wants its tokens."""

    def __init__(self, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.issued: list[str] = []
        self.token_requests: list[httpx.Request] = []
        self.revoked: set[str] = set()
        self.refuse = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            self.token_requests.append(request)
            if self.refuse:
                return httpx.Response(401, json={"error": "invalid_client"})
            token = f"tok-{len(self.issued) + 1}"
            self.issued.append(token)
            return httpx.Response(
                200, json={"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
            )
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if bearer not in self.issued or bearer in self.revoked:
            return httpx.Response(401)
        return httpx.Response(200, json={"ok": True, "token": bearer})

    def client(self, auth: ClientCredentialsAuth) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler), auth=auth)


SETTINGS = ClientCredentialsSettings(
    token_url=TOKEN_URL, client_id="erp-gateway", client_secret="s3cret!", scope="stock:read orders:read"
)


async def test_token_is_fetched_once_and_reused() -> None:
    server = FakeAuthorizationServer()
    auth = ClientCredentialsAuth(SETTINGS)
    async with server.client(auth) as client:
        for _ in range(5):
            assert (await client.get(API)).json()["token"] == "tok-1"
    assert auth.fetches == 1
    request = server.token_requests[0]
    form = parse_qs(request.content.decode())
    assert form == {"grant_type": ["client_credentials"], "scope": ["stock:read orders:read"]}
    basic = base64.b64decode(request.headers["Authorization"].removeprefix("Basic ")).decode()
    assert basic == "erp-gateway:s3cret!"


async def test_token_is_renewed_before_it_expires() -> None:
    server = FakeAuthorizationServer(expires_in=30)  # inside the 60 s leeway: always renewed
    auth = ClientCredentialsAuth(SETTINGS)
    async with server.client(auth) as client:
        await client.get(API)
        assert (await client.get(API)).json()["token"] == "tok-2"


async def test_a_401_gets_one_new_token_and_one_retry() -> None:
    server = FakeAuthorizationServer()
    auth = ClientCredentialsAuth(SETTINGS)
    async with server.client(auth) as client:
        await client.get(API)
        server.revoked.add("tok-1")
        response = await client.get(API)
    assert response.json()["token"] == "tok-2"
    assert auth.fetches == 2


async def test_client_secret_post_and_audience() -> None:
    server = FakeAuthorizationServer()
    settings = ClientCredentialsSettings(
        token_url=TOKEN_URL,
        client_id="gw",
        client_secret="pw",
        audience="https://erp.example.com",
        auth_method="client_secret_post",
    )
    async with server.client(ClientCredentialsAuth(settings)) as client:
        await client.get(API)
    form = parse_qs(server.token_requests[0].content.decode())
    assert form["client_id"] == ["gw"]
    assert form["client_secret"] == ["pw"]
    assert form["audience"] == ["https://erp.example.com"]
    assert "Authorization" not in server.token_requests[0].headers


async def test_a_refusing_token_endpoint_is_an_httpx_error_without_the_secret() -> None:
    server = FakeAuthorizationServer()
    server.refuse = True
    async with server.client(ClientCredentialsAuth(SETTINGS)) as client:
        with pytest.raises(TokenEndpointError, match="invalid_client") as caught:
            await client.get(API)
    assert isinstance(caught.value, httpx.HTTPError)
    assert "s3cret" not in str(caught.value)


def test_secrets_come_from_files_and_never_show(tmp_path: Path) -> None:
    secret_file = tmp_path / "client_secret"
    secret_file.write_text("from-file\n")
    secret = read_secret("inline", str(secret_file), "client_secret")
    assert secret.reveal() == "from-file"
    assert read_secret("inline", "", "client_secret").reveal() == "inline"
    assert "from-file" not in repr(secret)
    assert "from-file" not in f"{secret}"
    assert "s3cret" not in repr(SETTINGS)
    assert "s3cret" not in repr(ClientCredentialsAuth(SETTINGS))
    with pytest.raises(ValueError, match="client_secret_file"):
        read_secret("", str(tmp_path / "missing"), "client_secret")
    settings = ClientCredentialsSettings(token_url=TOKEN_URL, client_id="gw", client_secret_file=str(secret_file))
    assert ClientCredentialsAuth(settings) is not None
    assert bool(Secret("")) is False


def test_incomplete_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="token_url"):
        ClientCredentialsAuth(ClientCredentialsSettings(client_id="x"))
