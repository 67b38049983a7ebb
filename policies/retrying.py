"""Retries with jittered exponential backoff, for idempotent reads only.

Only ERP failures (``ErpUnavailable``, ``ErpTimeout``) are retried, never an open circuit,
an exhausted call budget or a business answer; writes are never retried here (returns are
made safe by their idempotency key instead).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import msgspec

from erp_backends.errors import ErpTimeout, ErpUnavailable

__all__ = ["RetrySettings", "retrying"]

T = TypeVar("T")


class RetrySettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: Extra attempts for a failed idempotent read (0: no retry).
    read_attempts: int = 1
    #: First backoff in seconds; doubles per attempt, with full jitter.
    backoff_seconds: float = 0.05


async def retrying(
    fn: Callable[[], Coroutine[Any, Any, T]],
    settings: RetrySettings,
    give_up: tuple[type[BaseException], ...] = (),
) -> T:
    attempt = 0
    while True:
        try:
            return await fn()
        except (ErpUnavailable, ErpTimeout) as exc:
            if attempt >= settings.read_attempts or isinstance(exc, give_up):
                raise
        attempt += 1
        await asyncio.sleep(random.uniform(0, settings.backoff_seconds * 2 ** (attempt - 1)))  # noqa: S311
