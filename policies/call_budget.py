"""The ERP call budget: a cap on ERP calls per second and on ERP calls in flight, per process.

A burst of misses waits up to ``max_wait_seconds`` for budget (aiolimiter for the rate, a
semaphore for concurrency); what cannot get budget in time is shed with ``CallBudgetExhausted``
(503 with ``Retry-After``), so a spike reaches the ERP as a bounded, smooth flow. The caps
are per gateway process: the ERP sees at most ``workers x instances`` times these numbers,
so size them by dividing the ERP's capacity (stated in the README).

Published names keep their first spelling: the settings key is ``erp_limits`` (environment
``ERPGW_ERP_LIMITS__*``) and a shed call is the problem type ``erp-busy``; both are part of the
documented interface and are never renamed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import msgspec
from aiolimiter import AsyncLimiter

from erp_backends.errors import ErpUnavailable

__all__ = ["CallBudget", "CallBudgetExhausted", "CallBudgetSettings"]

T = TypeVar("T")


class CallBudgetSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: ERP calls per second per process.
    calls_per_second: float = 50.0
    #: ERP calls in flight at once per process.
    max_concurrent: int = 16
    #: Seconds a call may wait for budget before it is shed with a 503.
    max_wait_seconds: float = 0.5


class CallBudgetExhausted(ErpUnavailable):
    code = "erp-busy"


class CallBudget:
    def __init__(self, settings: CallBudgetSettings) -> None:
        self.settings = settings
        self._rate = AsyncLimiter(max_rate=settings.calls_per_second, time_period=1.0)
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self.in_flight = 0

    async def call(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        try:
            async with asyncio.timeout(self.settings.max_wait_seconds):
                await self._rate.acquire()
                await self._slots.acquire()
        except TimeoutError:
            raise CallBudgetExhausted(
                "too many ERP calls at once; the request was shed to protect the ERP", retry_after=1.0
            ) from None
        self.in_flight += 1
        try:
            return await fn()
        finally:
            self.in_flight -= 1
            self._slots.release()
