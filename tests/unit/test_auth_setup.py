"""Auth settings, dev-mode keys, the ``erp-gateway token`` command and production start checks."""

from __future__ import annotations

import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.auth import Authentication
from gateway.auth.devkeys import dev_jwks, load_or_create_dev_key
from gateway.auth.jwks import StaticKeys
from gateway.auth.settings import DEV_ISSUER, AuthSettings
from gateway.auth.tokens import TokenVerifier
from gateway.cli import main
from gateway.settings import load_settings


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"ERPGW_AUTH__ALGORITHMS": "RS256 HS256"}, "auth.algorithms"),
        ({"ERPGW_AUTH__ALGORITHMS": "none"}, "auth.algorithms"),
        ({"ERPGW_AUTH__ALGORITHMS": ""}, "auth.algorithms"),
        ({"ERPGW_AUTH__MAX_TOKEN_BYTES": "12"}, "auth.max_token_bytes"),
        ({"ERPGW_AUTH__CLIENT_CLASSES": "storefront"}, "auth.client_classes"),
        ({"ERPGW_AUTH__LEEWAY_SECONDS": "-1"}, "auth.leeway_seconds"),
        ({"ERPGW_AUTH__DEV_MODE": "maybe"}, "auth.dev_mode"),
    ],
)
def test_bad_auth_settings_stop_the_start(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        load_settings(environ)


def test_auth_settings_from_the_environment() -> None:
    settings = load_settings(
        {
            "ERPGW_AUTH__ISSUER": "https://idp.example.com/realms/retail",
            "ERPGW_AUTH__ALGORITHMS": "RS256,ES256",
            "ERPGW_AUTH__CLIENT_CLASSES": "storefront=premium helpdesk=internal",
        }
    ).auth
    assert settings.algorithm_list == ("RS256", "ES256")
    assert settings.client_class_map == {"storefront": "premium", "helpdesk": "internal"}
    assert settings.effective_issuer == "https://idp.example.com/realms/retail"
    assert AuthSettings(dev_mode=True).effective_issuer == DEV_ISSUER
    assert not AuthSettings().dev_mode  # off unless enabled


def test_dev_key_is_created_once_owner_only_and_shared(tmp_path: Path) -> None:
    path = tmp_path / "var" / "key.json"
    keys: list[Any] = []
    threads = [threading.Thread(target=lambda: keys.append(load_or_create_dev_key(path))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({key.kid for key in keys}) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["key.json"]
    assert "d" not in dev_jwks(keys[0])[0]  # the published JWKS has no private part


async def test_token_command_prints_a_token_the_gateway_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ERPGW_AUTH__DEV_KEY_PATH", str(tmp_path / "key.json"))
    monkeypatch.setenv("ERPGW_AUTH__CHANNEL_CLAIM", "channel")
    argv = ["token", "--client", "storefront", "--scope", "availability:read", "--scope", "prices:read"]
    assert main([*argv, "--ttl", "120", "--client-class", "premium", "--channel", "pos"]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert "ERPGW_AUTH__DEV_MODE=true" in out.err
    key = load_or_create_dev_key(tmp_path / "key.json")
    verifier = TokenVerifier(AuthSettings(dev_mode=True, channel_claim="channel"), StaticKeys(dev_jwks(key)))
    identity = await verifier.verify(token)
    assert identity.client_id == "storefront"
    assert identity.client_class == "premium"
    assert identity.channel == "pos"
    assert identity.scopes == {"availability:read", "prices:read"}


def test_token_command_refuses_unknown_or_no_scopes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERPGW_AUTH__DEV_KEY_PATH", str(tmp_path / "key.json"))
    with pytest.raises(SystemExit):
        main(["token", "--client", "x", "--scope", "everything"])
    assert main(["token", "--client", "x"]) == 2
    assert main(["token", "--client", "x", "--all-scopes", "--channel", "pos"]) == 2  # no claim to carry it


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (AuthSettings(), "no identity provider is configured"),
        (AuthSettings(jwks_url="https://idp.example.com/certs"), "auth.issuer: not set"),
        (AuthSettings(issuer="x"), "auth.jwks_url: not set"),
        (AuthSettings(jwks_url="http://idp.example.com/certs", issuer="x"), "is not an https URL"),
        (AuthSettings(jwks_url="file:///etc/passwd", issuer="x"), "is not an https URL"),
    ],
)
async def test_production_mode_needs_an_identity_provider(settings: AuthSettings, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        async with Authentication(settings).lifespan(None):
            pass


async def test_loopback_http_jwks_is_allowed_for_local_identity_providers() -> None:
    settings = AuthSettings(jwks_url="http://127.0.0.1:1/certs", issuer="x", jwks_timeout_seconds=0.2)
    async with Authentication(settings).lifespan(None):
        pass  # the IdP does not answer: logged, the gateway still starts


async def test_dev_mode_start_is_loud(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = AuthSettings(dev_mode=True, dev_key_path=str(tmp_path / "key.json"))
    async with Authentication(settings).lifespan(None):
        pass
    warnings = [r for r in caplog.records if r.name == "erp_gateway.auth" and r.levelname == "WARNING"]
    assert warnings
    assert "DEV MODE" in warnings[0].getMessage()
