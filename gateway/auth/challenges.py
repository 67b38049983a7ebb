"""``WWW-Authenticate`` challenges (RFC 6750 section 3) for 401 and 403 answers."""

from __future__ import annotations

__all__ = ["REALM", "challenge"]

REALM = "erp-gateway"


def challenge(error: str | None = None, description: str | None = None, scope: str | None = None) -> str:
    """A ``WWW-Authenticate`` value (RFC 6750 section 3)."""
    parts = [f'Bearer realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append('error_description="{}"'.format(description.replace("\\", "").replace('"', "'")))
    if scope:
        parts.append(f'scope="{scope}"')
    return ", ".join(parts)
