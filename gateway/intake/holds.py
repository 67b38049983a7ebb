"""What accepted orders hold, subtracted from every availability answer.

``available_to_promise`` (per warehouse and in total) is the ERP's minus the units held for
accepted orders the ERP does not show yet (``HoldLedger.held``), the warehouses taken together
as intake judges them (``_subtract``); ``on_hand`` and ``committed`` stay the ERP's. A hold
never makes a positive figure negative (at most down to 0); a figure the ERP already had below
0 (a backorder) stays as it was, so the total may then be more than the warehouses' sum.

Each process keeps the ledger of a SKU for ``ttl_seconds`` (the cache's local TTL) after it
read it from the store: an order accepted through another worker or instance shows in this
one's answers within that time, the bound the cache's in-process tier has for an
invalidation. A change made through this process shows at once (``forget``).

``validateOrder`` is judged the same way (``judge``): a cart the ERP finds in stock is still
short when accepted orders hold the units, so the checkout hears it before it submits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

import msgspec

from contracts.v1 import AvailabilityBatch, OrderValidation, OrderValidationRequest, SkuAvailability, ValidationProblem
from erp_backends.port import CallContext, CallNotes, ErpBackend
from gateway.intake.store import HoldLedger, IntakeStore, IntakeStoreUnavailable

__all__ = ["HeldStock"]

#: Seconds subtracted from an answer's ``asOf`` to get the time its ERP read was sent (the
#: adapter stamps ``asOf`` when the answer came): a posted hold that young still counts.
_READ_MARGIN_SECONDS = 5.0

_NONE = HoldLedger(active={}, posted={})


class HeldStock:
    def __init__(self, store: IntakeStore, ttl_seconds: float) -> None:
        self._store = store
        self._ttl = ttl_seconds
        #: sku -> (known until, that SKU's part of the ledger)
        self._known: dict[str, tuple[float, HoldLedger]] = {}
        #: sku -> the store read under way for it: concurrent answers wait for it, not ask again;
        #: ``forget`` takes it off, and a read no longer listed for a SKU does not keep its answer
        self._reading: dict[str, asyncio.Future[dict[str, HoldLedger]]] = {}

    def none_held(self, sku: str) -> bool:
        """True when this process knows, within its TTL, that nothing is held on ``sku`` (the
        hot path may answer the ERP's figures as they are); False: ask ``subtract``."""
        known = self._known.get(sku)
        return known is not None and known[0] > time.monotonic() and not known[1].active and not known[1].posted

    def forget(self, sku: str) -> None:
        """Holds on ``sku`` changed here (accepted, cancelled, replayed): read them again. A read
        of the store already under way may have been answered before the change: it still
        serves the answer that asked for it, but is not kept, nor waited for by a later one."""
        self._known.pop(sku, None)
        self._reading.pop(sku, None)

    async def subtract(self, batch: AvailabilityBatch, read_at: Mapping[str, float]) -> AvailabilityBatch:
        """``batch`` with the held units subtracted. The store is asked for the SKUs this
        process does not know within its TTL; while it cannot answer, what this process last
        knew stands (availability answers go on while intake is refused). ``read_at``: when
        each SKU's figures were read from the ERP, where known (``CallNotes.read_at``); else
        ``asOf`` less a margin."""
        if not batch.items:
            return batch
        ledger = await self._ledger([item.sku for item in batch.items])
        items = [_subtract(item, ledger, read_at.get(item.sku)) for item in batch.items]
        return msgspec.structs.replace(batch, items=items)

    async def any_held(self, skus: Sequence[str]) -> bool:
        """Whether accepted orders hold (or lately posted) any unit of ``skus``, as this process
        knows it within its TTL."""
        ledger = await self._ledger(list(dict.fromkeys(skus)))
        return bool(ledger.active or ledger.posted)

    async def judge(
        self, erp: ErpBackend, request: OrderValidationRequest, verdict: OrderValidation, ctx: CallContext
    ) -> OrderValidation:
        """The ERP's ``verdict`` on a cart, its stock judged again less what accepted orders hold:
        a line the holds make short gains (or has lowered) its ``insufficient_stock`` problem,
        with ``available`` what is left after holds and the earlier lines of the same SKU. Nothing
        held on the cart's SKUs: the verdict as it is, with no further call."""
        skus = list(dict.fromkeys(line.sku for line in request.lines))
        if not await self.any_held(skus):
            return verdict
        notes = CallNotes()  # the availability read's cache notes are not this answer's
        warehouses = [request.warehouse] if request.warehouse else None
        batch = await erp.get_availability(skus, warehouses, msgspec.structs.replace(ctx, notes=notes))
        left = {item.sku: item.available_to_promise for item in (await self.subtract(batch, notes.read_at)).items}
        problems = list(verdict.problems)
        for index, line in enumerate(request.lines):
            if line.sku not in left:
                continue  # unknown: the ERP said so
            free = max(left[line.sku], 0)
            left[line.sku] -= line.quantity
            if line.quantity <= free:
                continue
            detail = f"{line.quantity} requested, {free} available (after units held for accepted orders)"
            found = next(
                (n for n, p in enumerate(problems) if p.line == index and p.code == "insufficient_stock"), None
            )
            if found is None:
                problems.append(
                    ValidationProblem(
                        line=index, sku=line.sku, code="insufficient_stock", detail=detail, available=free
                    )
                )
            elif (problems[found].available or 0) > free:
                problems[found] = msgspec.structs.replace(problems[found], detail=detail, available=free)
        if problems == verdict.problems:
            return verdict
        problems.sort(key=lambda problem: problem.line)  # stable: a line's own problems keep their order
        return msgspec.structs.replace(verdict, valid=False, problems=problems)

    async def _ledger(self, skus: Sequence[str]) -> HoldLedger:
        now = time.monotonic()
        parts: dict[str, HoldLedger] = {}  # taken now: a forget() while this waits drops the entry
        missing: list[str] = []
        for sku in skus:
            known = self._known.get(sku)
            if known is not None and known[0] > now:
                parts[sku] = known[1]
            else:
                missing.append(sku)
        if missing:
            reads = {id(read): read for sku in missing if (read := self._reading.get(sku)) is not None}
            mine = [sku for sku in missing if sku not in self._reading]
            if mine:
                read = asyncio.ensure_future(self._read(mine, now))
                for sku in mine:
                    self._reading[sku] = read
                read.add_done_callback(lambda done: self._done_reading(mine, done))
                reads[id(read)] = read
            # shielded: one caller gone (its client hung up) does not cancel the others' read
            for answer in await asyncio.gather(*(asyncio.shield(read) for read in reads.values())):
                parts.update(answer)
        active: dict[tuple[str, str], int] = {}
        posted: dict[tuple[str, str], tuple[tuple[float, int], ...]] = {}
        for sku in skus:
            part = parts[sku]
            active.update(part.active)
            posted.update(part.posted)
        return HoldLedger(active=active, posted=posted)

    def _done_reading(self, skus: Sequence[str], done: asyncio.Future[dict[str, HoldLedger]]) -> None:
        for sku in skus:
            if self._reading.get(sku) is done:
                del self._reading[sku]

    async def _read(self, skus: Sequence[str], now: float) -> dict[str, HoldLedger]:
        """One store read of ``skus``' ledger; each SKU's part, kept for the TTL unless the SKU
        was forgotten meanwhile. The store down: what this process last knew (nothing where it
        knew nothing), kept for no time."""
        this = asyncio.current_task()
        try:
            fresh: HoldLedger | None = await self._store.ledger(skus, time.time())
        except IntakeStoreUnavailable:  # reads go on: with what this process last knew
            fresh = None
        parts: dict[str, HoldLedger] = {}
        for sku in skus:
            if fresh is None:
                known = self._known.get(sku)
                parts[sku] = known[1] if known is not None else _NONE
                if known is None:
                    self._known[sku] = (now, _NONE)
                continue
            parts[sku] = _part(fresh, sku)
            if self._reading.get(sku) is this:  # not forgotten since this read began
                self._known[sku] = (now + self._ttl, parts[sku])
        if len(self._known) > 50_000:  # bounded: forget what ran out
            self._known = {k: v for k, v in self._known.items() if v[0] > now}
        return parts


def _part(ledger: HoldLedger, sku: str) -> HoldLedger:
    active = {place: units for place, units in ledger.active.items() if place[0] == sku}
    posted = {place: items for place, items in ledger.posted.items() if place[0] == sku}
    return HoldLedger(active=active, posted=posted) if active or posted else _NONE


def _subtract(item: SkuAvailability, ledger: HoldLedger, read_at: float | None) -> SkuAvailability:
    """The figures less the holds, judged as intake judges them (the warehouses together): a
    hold comes off its own warehouse, what that warehouse does not have off the others in order,
    never below zero; the total is the ERP's less every hold (at least 0, unless the ERP's own
    total was below it). A warehouse the ERP shows below zero stays as the ERP shows it."""
    if read_at is None:
        read_at = item.as_of.timestamp() - _READ_MARGIN_SECONDS
    held = {stock.warehouse: ledger.held(item.sku, stock.warehouse, read_at) for stock in item.warehouses}
    total_held = sum(held.values())
    if not total_held:
        return item
    figures = {stock.warehouse: stock.available_to_promise for stock in item.warehouses}
    overflow = 0
    for warehouse, units in held.items():
        own = min(units, max(figures[warehouse], 0))
        figures[warehouse] -= own
        overflow += units - own
    for warehouse in figures:
        if overflow and figures[warehouse] > 0:
            taken = min(overflow, figures[warehouse])
            figures[warehouse] -= taken
            overflow -= taken
    erp_total = item.available_to_promise
    total = max(0, erp_total - total_held) if erp_total > 0 else erp_total
    warehouses = [msgspec.structs.replace(w, available_to_promise=figures[w.warehouse]) for w in item.warehouses]
    return msgspec.structs.replace(item, warehouses=warehouses, available_to_promise=total)
