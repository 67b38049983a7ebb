"""Shadow reads: a sampled share of read calls also sent to a second backend, off the caller's
critical path, and the two contract answers compared (``compare``).

The caller's answer is returned before the shadow call starts (a task of its own); the shadow
goes through its backend's own chain without the cache (its breaker, call budget and timeouts,
so a slow or failing shadow opens its own breaker and spends its own budget, never the
primary's); at most ``max_in_flight`` run at once per process, more are skipped. Each outcome
is counted (``erpgw_shadow_reads_total{operation, outcome}``: match, mismatch, error, skipped)
and a mismatch is kept in the ``MismatchLog`` with its field paths and both values.

What is compared is the adapter's answer, before anything the gateway adds (intake's holds).
A figure that moved between the two reads (stock sold in between) shows as a mismatch: read
the report for patterns, not single counts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import msgspec

from erp_backends.errors import ErpError, NotFound, Rejected
from erp_backends.invocation import Invocation
from erp_backends.port import CallNotes, ErpBackend
from gateway.routing.compare import Difference, differences
from gateway.routing.mismatches import Mismatch, MismatchLog
from gateway.routing.settings import ShadowSettings, names

__all__ = ["Shadow", "subject_of"]

log = logging.getLogger("erp_gateway.shadow")

#: (backend, operation, outcome) -> None: count one shadow read.
Observe = Callable[[str, str, str], None]


class Shadow:
    def __init__(
        self,
        name: str,
        backend: ErpBackend,
        settings: ShadowSettings,
        mismatches: MismatchLog,
        observe: Observe,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self._backend = backend
        self._operations = frozenset(names(settings.operations))
        self._rate = settings.sample_rate
        self._ignore = names(settings.ignore)
        self._max = settings.max_in_flight
        self._log = mismatches
        self._observe = observe
        self._chance = chance
        self._tasks: set[asyncio.Task[None]] = set()

    def draw(self, operation: str, primary: str) -> bool:
        """Whether this call of ``operation``, served by ``primary``, is sampled."""
        return operation in self._operations and primary != self.name and self._chance() < self._rate

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def offer(self, invocation: Invocation[Any], answer: object, primary: str) -> None:
        """Maybe ask the shadow too, in the background; never raises, never waits."""
        operation = invocation.operation
        notes = invocation.ctx.notes
        drawn = notes.sampled if notes is not None else None
        if drawn is False or (drawn is None and not self.draw(operation, primary)):
            return
        if operation not in self._operations or primary == self.name:
            return
        if len(self._tasks) >= self._max:
            self._observe(self.name, operation, "skipped")
            return
        task = asyncio.get_running_loop().create_task(self._compare(invocation, answer, primary))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the shadow calls under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _compare(self, invocation: Invocation[Any], answer: object, primary: str) -> None:
        operation = invocation.operation
        # its own notes: the shadow's cache and backend are not the caller's answer
        ctx = msgspec.structs.replace(invocation.ctx, notes=CallNotes())
        try:
            theirs: object = await invocation.with_context(ctx).send(self._backend)
            found = differences(answer, theirs, ignore=self._ignore)
        except NotFound:
            found = [Difference(path="", primary="found", shadow="not found")]
        except Rejected as exc:
            found = [Difference(path="", primary="answered", shadow=f"refused: {exc.code}")]
        except ErpError as exc:
            self._observe(self.name, operation, "error")
            log.info("shadow %s of %s failed: %s", self.name, operation, type(exc).__name__)
            return
        except asyncio.CancelledError:
            raise
        except Exception:  # our own bug: logged, counted, never the caller's
            self._observe(self.name, operation, "error")
            log.exception("shadow %s of %s: comparing failed", self.name, operation)
            return
        if not found:
            self._observe(self.name, operation, "match")
            return
        self._observe(self.name, operation, "mismatch")
        mismatch = Mismatch(
            at=time.time(),
            operation=operation,
            subject=subject_of(invocation),
            primary=primary,
            shadow=self.name,
            differences=found,
        )
        try:
            await self._log.add(mismatch)
        except Exception as exc:
            log.warning("shadow mismatch of %s not kept: %s", operation, type(exc).__name__)


def subject_of(invocation: Invocation[Any]) -> str:
    """What was asked, for the report: SKUs, a customer reference, an order number or reference."""
    args = invocation.args
    match invocation.operation:
        case "get_availability":
            where = f" warehouses={','.join(args[1])}" if args[1] else ""
            return f"skus={','.join(args[0])}{where}"
        case "check_prices" | "validate_order":
            request = args[0]
            who = f"customer={request.customer} " if request.customer else ""
            return f"{who}skus={','.join(line.sku for line in request.lines)}"
        case "get_order":
            return f"order={args[0]}"
        case "find_orders":
            return f"externalRef={args[0]}"
    return invocation.operation
