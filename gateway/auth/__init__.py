"""Who may call what: bearer-token authentication, scope guard, dev-mode keys, outbound OAuth2.

``authentication`` (the verifier, its middleware and key lifespan the app factory registers),
``tokens``, ``jwks``, ``middleware``, ``guards`` (``require_scopes``), ``scopes`` (routes declare
theirs with ``requires``), ``minimization``, ``challenges``, ``devkeys``, ``openapi``,
``outbound`` and ``settings``; the names the app uses are re-exported here.
"""

from gateway.auth.authentication import Authentication
from gateway.auth.guards import require_scopes
from gateway.auth.openapi import security_components
from gateway.auth.scopes import PII_SCOPE, SCOPES, WRITE_SCOPES, requires
from gateway.auth.settings import AuthSettings

__all__ = [
    "PII_SCOPE",
    "SCOPES",
    "WRITE_SCOPES",
    "AuthSettings",
    "Authentication",
    "require_scopes",
    "requires",
    "security_components",
]
