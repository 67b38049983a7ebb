"""Who is calling: set once per request by authentication, read by quotas, audit and metrics.

Authentication (``gateway.auth``) stores a ``ClientIdentity`` in the ASGI scope state; until
a request is authenticated, ``client_identity`` returns None.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["ClientIdentity", "client_identity", "set_client_identity"]

_KEY = "client_identity"


class ClientIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """The caller: ``client_id`` from the token, its quota class, and its granted scopes."""

    client_id: str
    client_class: str = "default"
    scopes: frozenset[str] = frozenset()
    #: The sales channel the token names (``auth.channel_claim``), if any.
    channel: str | None = None


def client_identity(scope: Any) -> ClientIdentity | None:
    state = scope.get("state")
    if not state:
        return None
    found: ClientIdentity | None = state.get(_KEY)
    return found


def set_client_identity(scope: Any, identity: ClientIdentity) -> None:
    scope.setdefault("state", {})[_KEY] = identity
