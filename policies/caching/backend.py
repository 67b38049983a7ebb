"""``CachingBackend``: read operations answered per item from the two-tier cache, misses
coalesced, each lookup's outcome reported to the call's ``CallNotes``.

Items, so that batches and single requests share entries (keys: ``policies.caching.keys``):
- availability per SKU (all warehouses; a warehouse filter is applied after the cache);
- prices per currency, customer, SKU and quantity (exact quantity: a tier boundary is the
  ERP's secret, so quantity is the only key that can never give a wrong price);
- orders per order number, and the storefront-reference index to order numbers.

Freshness per entry: until ``ttl`` it is served as ``cached``; until ``ttl + stale_while_
revalidate`` it is served ``stale`` while one background call refreshes it; until ``ttl +
stale_if_error`` it is served ``stale`` only when the ERP fails. Order validation and returns
are never answered from the cache; a return drops the cached order it changed. Orders are
cached only where that drop reaches every copy: with a shared tier, or in a single worker.
Without Redis, a second worker could otherwise show an order without the return just made
through the first one for the order's whole TTL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from contracts.v1 import (
    AvailabilityBatch,
    Order,
    OrderIntakeRequest,
    OrderList,
    OrderValidation,
    OrderValidationRequest,
    PriceCheck,
    PriceCheckLine,
    PriceCheckRequest,
    PriceLine,
    ReturnAuthorization,
    ReturnRequest,
    SkuAvailability,
)
from contracts.v1._types import Freshness
from erp_backends.errors import ErpTimeout, ErpUnavailable, NotFound, Rejected
from erp_backends.operations import OPERATIONS, spec_of
from erp_backends.port import CallContext, CallNotes, ErpBackend, IdempotencyToken, OrderOutcome, ReturnOutcome
from erp_backends.rules import price_check
from policies.caching.keys import CacheKeys
from policies.caching.single_flight import Fetch, SingleFlight
from policies.caching.store import CacheSettings, InvalidationNotShared, TieredStore
from policies.shared_state import LenientState

__all__ = ["CachingBackend"]

log = logging.getLogger("erp_gateway.cache")

#: Longest an ERP read another request began can have been under way when one joins it: the
#: read time assumed when the store no longer holds the answer's own (``stock_snapshot``).
_LONGEST_FETCH_SECONDS = 60.0
_AVAIL = msgspec.json.Decoder(SkuAvailability | None)  # None: the ERP does not know the SKU
_ANSWER = msgspec.json.Encoder()  # as Litestar encodes a Struct answer (tests/api/test_hot_path.py)
_PRICE = msgspec.json.Decoder(PriceLine)
_ORDER = msgspec.json.Decoder(Order)
_REF = msgspec.json.Decoder(list[str])
_ERP_DOWN = (ErpUnavailable, ErpTimeout)


#: The operations this backend answers from the cache: must be those ``OPERATIONS`` declares cached.
_CACHED = frozenset({"get_availability", "check_prices", "get_order", "find_orders"})


def _check_declarations() -> None:
    declared = {name for name, spec in OPERATIONS.items() if spec.cached}
    if declared != _CACHED:
        raise LookupError(
            f"erp_backends.operations declares {sorted(declared)} cached; the cache serves {sorted(_CACHED)}"
        )


class CachingBackend(ErpBackend):
    """Wraps a backend (already shielded by limits and breakers) with the two-tier cache."""

    def __init__(
        self,
        inner: ErpBackend,
        shared: LenientState,
        settings: CacheSettings,
        namespace: str | None = None,
        *,
        workers: int = 1,
    ) -> None:
        _check_declarations()
        self.inner = inner
        self.name = inner.name
        self.settings = settings
        #: Keys under ``namespace`` (default: the backend's name): two backends never share entries.
        self.keys = CacheKeys(namespace if namespace is not None else inner.name)
        self.store = TieredStore(shared, settings, self.keys)
        self._flight = SingleFlight()
        self._warehouses: frozenset[str] | None = None
        #: The gateway's own writes (returns) change orders: cache them only where the drop is seen by all.
        self.orders_cached = shared.configured or workers <= 1

    async def _read(
        self,
        keys: Sequence[str],
        decoder: msgspec.json.Decoder[Any],
        fetch: Fetch,
        note: CallNotes | None,
    ) -> dict[str, tuple[Any, Freshness]]:
        """Value and freshness per key: cached, stale, or fetched (coalesced) from the ERP;
        what was served how is added to ``note`` (the call's, if anybody reads it)."""
        if note is None:
            note = CallNotes()
        now = time.time()
        entries = await self.store.get_many(keys, decoder)
        out: dict[str, tuple[Any, Freshness]] = {}
        need: list[str] = []
        refresh: list[str] = []
        for key in keys:
            entry = entries.get(key)
            if entry is None or entry.stale_until <= now:
                need.append(key)
                continue
            ttl = entry.fresh_until - now
            note.ttl = ttl if note.ttl is None else min(note.ttl, ttl)
            if ttl > 0:
                out[key] = (entry.value, "cached")
                note.hits += 1
            else:
                out[key] = (entry.value, "stale")
                note.stale += 1
                refresh.append(key)
        if refresh:
            self._flight.refresh(refresh, fetch, self.store.background)
        if need:
            note.misses += len(need)
            try:
                fetched = await self._flight.fetch(need, fetch, note)
            except _ERP_DOWN:
                # stale-if-error: every missing key must have an entry still inside its error window
                if not all(key in entries and entries[key].error_until > now for key in need):
                    raise
                note.stale_if_error = True
                note.misses -= len(need)
                note.stale += len(need)
                for key in need:
                    out[key] = (entries[key].value, "stale")
                    ttl = entries[key].fresh_until - now
                    note.ttl = ttl if note.ttl is None else min(note.ttl, ttl)
            else:
                for key in need:
                    if key in fetched:
                        out[key] = (fetched[key], "fresh")
        return out

    # -- availability ----------------------------------------------------------------------

    async def _fetch_availability(self, keys: list[str], ctx: CallContext) -> dict[str, Any]:
        skus = [self.keys.sku_of(k) for k in keys]
        read_at = time.time()
        batch = await self.inner.get_availability(skus, None, ctx)
        found: dict[str, Any] = {self.keys.availability(item.sku): item for item in batch.items}
        if batch.items:
            self._warehouses = frozenset(w.warehouse for w in batch.items[0].warehouses)
        found.update({self.keys.availability(sku): None for sku in batch.unknown_skus})
        rule = self.settings.availability
        await self.store.put_many(
            ((k, v, self.settings.unknown_sku_ttl_seconds if v is None else rule) for k, v in found.items()),
            read_at=read_at,
        )
        return found

    def cached_availability(self, sku: str) -> tuple[bytes, float] | None:
        """The SKU's stock as the JSON of a ``cached`` answer, and the seconds of freshness left,
        when this process holds a fresh answer: no await, no Redis, no ERP (``gateway.hot_path``).
        None: ask ``get_availability``. Whoever serves it records the hit (``CallNotes.hit``)."""
        entry = self.store.peek(self.keys.availability(sku), _AVAIL)
        if entry is None or entry.value is None:
            return None
        ttl = entry.fresh_until - time.time()
        if ttl <= 0:
            return None
        if entry.json is None:  # encoded once per entry, not once per request
            entry.json = _ANSWER.encode(_select(entry.value, None, "cached"))
        return entry.json, ttl

    async def get_availability(
        self, skus: Sequence[str], warehouses: Sequence[str] | None, ctx: CallContext
    ) -> AvailabilityBatch:
        unique = list(dict.fromkeys(skus))
        keys = [self.keys.availability(sku) for sku in unique]
        values = await self._read(keys, _AVAIL, lambda missing: self._fetch_availability(missing, ctx), ctx.notes)
        wanted = list(dict.fromkeys(warehouses)) if warehouses else None
        if wanted and self._warehouses is not None:
            for code in wanted:
                if code not in self._warehouses:
                    raise Rejected("unknown-warehouse", f"warehouse {code!r} is unknown", field="warehouse")
        items: list[SkuAvailability] = []
        unknown: list[str] = []
        if ctx.notes is not None:
            for sku, key in zip(unique, keys, strict=True):
                if (read_at := self.store.read_at(key)) is not None:
                    ctx.notes.read_at[sku] = read_at
        for sku, key in zip(unique, keys, strict=True):
            value, freshness = values.get(key, (None, "fresh"))
            if value is None:
                unknown.append(sku)
                continue
            items.append(_select(value, wanted, freshness))
        return AvailabilityBatch(items=items, unknown_skus=unknown)

    async def stock_snapshot(
        self, skus: Sequence[str], max_age: float, ctx: CallContext
    ) -> dict[str, tuple[SkuAvailability | None, float]]:
        """Each SKU's stock (None: unknown to the ERP) and when it was read (epoch seconds,
        taken before the ERP was asked), for order intake: a fresh cache entry, else the ERP
        now; while the ERP cannot answer, an entry read less than ``max_age`` ago, else the
        ERP's failure is raised."""
        now = time.time()
        unique = list(dict.fromkeys(skus))
        keys = [self.keys.availability(sku) for sku in unique]
        entries = await self.store.get_many(keys, _AVAIL)
        out: dict[str, tuple[SkuAvailability | None, float]] = {}
        need = [key for key in keys if key not in entries or entries[key].fresh_until <= now]
        for key in keys:
            if key not in need:
                out[self.keys.sku_of(key)] = (entries[key].value, entries[key].stored_at)
        if need:
            asked_at = time.time()
            try:
                fetched = await self._flight.fetch(
                    need, lambda missing: self._fetch_availability(missing, ctx), ctx.notes or CallNotes()
                )
            except _ERP_DOWN:
                if not all(key in entries and entries[key].stored_at >= now - max_age for key in need):
                    raise
                fetched = None
            for key in need:
                if fetched is None:
                    out[self.keys.sku_of(key)] = (entries[key].value, entries[key].stored_at)
                    continue
                # joined to a fetch another request began: its read time, as the store keeps it
                read_at = self.store.read_at(key)
                if read_at is None:  # not kept (an invalidation came meanwhile): assume the oldest
                    read_at = asked_at - _LONGEST_FETCH_SECONDS
                out[self.keys.sku_of(key)] = (fetched.get(key), min(read_at, asked_at))
        return out

    # -- prices ----------------------------------------------------------------------------

    async def _fetch_prices(self, keys: list[str], request: PriceCheckRequest, ctx: CallContext) -> dict[str, Any]:
        lines = [PriceCheckLine(sku=sku, quantity=quantity) for sku, quantity in map(self.keys.price_line_of, keys)]
        read_at = time.time()
        try:
            answer = await self.inner.check_prices(
                PriceCheckRequest(currency=request.currency, customer=request.customer, lines=lines), ctx
            )
        except Rejected as exc:
            raise _renumbered(exc, lines, request) from exc
        found = dict(zip(keys, answer.lines, strict=True))
        await self.store.put_many(((k, v, self.settings.prices) for k, v in found.items()), read_at=read_at)
        return found

    async def check_prices(self, request: PriceCheckRequest, ctx: CallContext) -> PriceCheck:
        price = self.keys.price
        keys = [price(request.currency, request.customer, line.sku, line.quantity) for line in request.lines]
        unique = list(dict.fromkeys(keys))
        values = await self._read(unique, _PRICE, lambda missing: self._fetch_prices(missing, request, ctx), ctx.notes)
        lines = [msgspec.structs.replace(values[k][0], freshness=values[k][1]) for k in keys]
        oldest = min((line.as_of for line in lines if line.as_of is not None), default=None)
        return price_check(request.customer, request.currency, lines, oldest or datetime.now(UTC))

    # -- orders ----------------------------------------------------------------------------

    async def _fetch_orders(self, keys: list[str], ctx: CallContext) -> dict[str, Any]:
        found: dict[str, Any] = {}
        read_at = time.time()
        for key in keys:
            try:
                found[key] = await self.inner.get_order(self.keys.order_number_of(key), ctx)
            except NotFound:
                continue
        await self.store.put_many(((k, v, self.settings.orders) for k, v in found.items()), read_at=read_at)
        return found

    async def get_order(self, order_number: str, ctx: CallContext) -> Order:
        if not self.orders_cached:
            return await self.inner.get_order(order_number, ctx)
        key = self.keys.order(order_number)
        values = await self._read([key], _ORDER, lambda missing: self._fetch_orders(missing, ctx), ctx.notes)
        if key not in values:
            raise NotFound("order", order_number)
        order, freshness = values[key]
        return msgspec.structs.replace(order, freshness=freshness)  # type: ignore[no-any-return]

    async def _fetch_ref(self, keys: list[str], ctx: CallContext) -> dict[str, Any]:
        (key,) = keys
        read_at = time.time()
        found = await self.inner.find_orders(self.keys.ref_of(key), ctx)
        numbers = [o.order_number for o in found.items]
        rule = self.settings.orders
        await self.store.put_many(
            [(key, numbers, rule), *((self.keys.order(o.order_number), o, rule) for o in found.items)],
            read_at=read_at,
        )
        return {key: numbers}

    async def find_orders(self, external_ref: str, ctx: CallContext) -> OrderList:
        if not self.orders_cached:
            return await self.inner.find_orders(external_ref, ctx)
        key = self.keys.order_ref(external_ref)
        values = await self._read([key], _REF, lambda missing: self._fetch_ref(missing, ctx), ctx.notes)
        numbers, _ = values[key]
        orders = [await self.get_order(number, ctx) for number in numbers]
        return OrderList(items=orders)

    # -- never cached ----------------------------------------------------------------------

    async def validate_order(self, request: OrderValidationRequest, ctx: CallContext) -> OrderValidation:
        return await self.inner.validate_order(request, ctx)

    async def create_return(
        self, request: ReturnRequest, idempotency: IdempotencyToken, ctx: CallContext
    ) -> ReturnOutcome:
        outcome = await self.inner.create_return(request, idempotency, ctx)
        if "orders" in spec_of("create_return").invalidates:  # returned quantities changed
            try:
                await self.invalidate(orders=[request.order_number])
            except InvalidationNotShared as exc:  # the return stands; other copies age out by TTL
                log.warning("return %s created; %s", outcome.authorization.rma_number, exc.detail)
        return outcome

    async def create_order(
        self, request: OrderIntakeRequest, idempotency: IdempotencyToken, ctx: CallContext
    ) -> OrderOutcome:
        return await self.inner.create_order(request, idempotency, ctx)  # drops nothing: see its declaration

    async def get_return(self, rma_number: str, ctx: CallContext) -> ReturnAuthorization:
        return await self.inner.get_return(rma_number, ctx)

    async def start(self, ctx: CallContext) -> None:
        await self.inner.start(ctx)

    async def check_ready(self) -> None:
        await self.inner.check_ready()

    async def aclose(self) -> None:
        self.store.background.cancel_all()
        await self.inner.aclose()

    # -- invalidation (ERP-side change events) ---------------------------------------------

    async def invalidate(
        self, *, skus: Sequence[str] = (), customers: Sequence[str] = (), orders: Sequence[str] = ()
    ) -> int:
        keys, stamps = self.keys.invalidation(skus, customers, orders)
        return await self.store.delete(keys, stamps)


def _select(item: SkuAvailability, wanted: list[str] | None, freshness: Freshness) -> SkuAvailability:
    """The item restricted to the warehouses asked for, with its freshness."""
    if wanted is None:
        return msgspec.structs.replace(item, freshness=freshness)
    per_wh = [w for w in item.warehouses if w.warehouse in wanted]
    per_wh.sort(key=lambda w: wanted.index(w.warehouse))
    return msgspec.structs.replace(
        item,
        warehouses=per_wh,
        on_hand=sum(w.on_hand for w in per_wh),
        committed=sum(w.committed for w in per_wh),
        available_to_promise=sum(w.available_to_promise for w in per_wh),
        freshness=freshness,
    )


def _renumbered(exc: Rejected, asked: list[PriceCheckLine], request: PriceCheckRequest) -> Rejected:
    """A rejection of the partial ERP call, pointing at the line of the caller's request."""
    if not exc.field or not exc.field.startswith("lines["):
        return exc
    index, _, rest = exc.field[len("lines[") :].partition("]")
    wanted = asked[int(index)]
    original = next(
        i for i, line in enumerate(request.lines) if (line.sku, line.quantity) == (wanted.sku, wanted.quantity)
    )
    return Rejected(exc.code, exc.detail, field=f"lines[{original}]{rest}", available=exc.available)
