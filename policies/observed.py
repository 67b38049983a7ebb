"""Observation of every ERP adapter call: the innermost edge of the policy chain.

``ObservedBackend`` wraps the bare adapter and reports each call (backend, operation, duration,
outcome) to an ``ErpCallObserver`` given by the composition root; policies know nothing of
how it is recorded (metrics, spans). Only calls that reach the adapter are seen: cache hits,
open breakers and shed calls never are. The observer may hand the call a new ``CallContext``
(for example one whose ``traceparent`` names the call's own span).
"""

from __future__ import annotations

import asyncio
from typing import Protocol, TypeVar

from erp_backends.errors import ErpTimeout, ErpUnavailable, NotFound, Rejected
from erp_backends.invocation import Invocation
from erp_backends.port import CallContext, ErpBackend
from erp_backends.wrapping import WrappingBackend

__all__ = ["ErpCallObserver", "ErpCallProbe", "ObservedBackend", "outcome_of"]

T = TypeVar("T")


class ErpCallProbe(Protocol):
    """One call under observation."""

    def context(self, ctx: CallContext) -> CallContext:
        """The context to call the adapter with."""

    def finish(self, outcome: str, error: BaseException | None) -> None:
        """The call ended with ``outcome`` (see ``outcome_of``)."""


class ErpCallObserver(Protocol):
    def start(self, backend: str, operation: str) -> ErpCallProbe:
        """A call of ``operation`` on ``backend`` begins."""


def outcome_of(error: BaseException | None) -> str:
    """A closed list: ok, not_found, rejected (business answers); unavailable, timeout, cancelled, error."""
    if error is None:
        return "ok"
    if isinstance(error, NotFound):
        return "not_found"
    if isinstance(error, Rejected):
        return "rejected"
    if isinstance(error, ErpTimeout):
        return "timeout"
    if isinstance(error, ErpUnavailable):
        return "unavailable"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"  # the timeout policy outside, or the caller went away
    return "error"


class ObservedBackend(WrappingBackend):
    def __init__(self, inner: ErpBackend, observer: ErpCallObserver) -> None:
        super().__init__(inner)
        self._observer = observer

    async def handle(self, invocation: Invocation[T]) -> T:
        probe = self._observer.start(self.name, invocation.operation)
        try:
            result = await invocation.with_context(probe.context(invocation.ctx)).send(self.inner)
        except BaseException as exc:
            probe.finish(outcome_of(exc), exc)
            raise
        probe.finish("ok", None)
        return result

    async def check_ready(self) -> None:
        probe = self._observer.start(self.name, "check_ready")
        try:
            await self.inner.check_ready()
        except BaseException as exc:
            probe.finish(outcome_of(exc), exc)
            raise
        probe.finish("ok", None)
