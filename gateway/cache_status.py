"""``Cache-Status`` (RFC 9211) on answers the cache took part in."""

from __future__ import annotations

from litestar.types import Message, Scope

from policies.caching import cache_status_header

__all__ = ["add_cache_status"]


async def add_cache_status(message: Message, scope: Scope) -> None:
    if message["type"] == "http.response.start" and (value := cache_status_header()) is not None:
        message["headers"] = [*message.get("headers", ()), (b"cache-status", value.encode("ascii"))]
