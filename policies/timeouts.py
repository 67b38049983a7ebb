"""Timeouts per operation class: an ERP call that takes too long becomes ``ErpTimeout`` (504)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import msgspec

from erp_backends.errors import ErpTimeout

__all__ = ["TimeoutSettings", "with_timeout"]

T = TypeVar("T")


class TimeoutSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: Seconds an ERP read (stock, prices, validation, lookups) may take.
    read_seconds: float = 5.0
    #: Seconds an ERP write (return authorization) may take.
    write_seconds: float = 15.0
    #: Seconds the adapter's start-up (login, reference data) may take, apart from any request.
    start_seconds: float = 30.0


async def with_timeout(fn: Callable[[], Coroutine[Any, Any, T]], seconds: float, what: str) -> T:
    try:
        async with asyncio.timeout(seconds):
            return await fn()
    except TimeoutError:
        raise ErpTimeout(f"the ERP did not answer {what} within {seconds:g} s") from None
