"""The OAuth2 client-credentials security scheme published in the OpenAPI components."""

from __future__ import annotations

from litestar.openapi.spec import Components, OAuthFlow, OAuthFlows, SecurityScheme

from gateway.auth.scopes import SCOPES, SECURITY_SCHEME

__all__ = ["security_components"]


def security_components(token_url: str) -> Components:
    return Components(
        security_schemes={
            SECURITY_SCHEME: SecurityScheme(
                type="oauth2",
                description=(
                    "OAuth2 client credentials: get an access token (an RFC 9068 JWT) from the identity provider "
                    "and send it as `Authorization: Bearer <token>`. Each operation names the scope it needs; "
                    "a missing or invalid token is a 401 problem, a missing scope a 403 problem."
                ),
                flows=OAuthFlows(client_credentials=OAuthFlow(token_url=token_url, scopes=dict(SCOPES))),
            )
        }
    )
