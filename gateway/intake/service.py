"""Accepting an order: judge it on the gateway's knowledge of stock and prices, then hold its
stock, record it and queue it in one atomic step of the store (``IntakeStore.accept``).

The judgement is ``validateOrder``'s, without asking the ERP when the cache knows: stock from
a fresh cache entry or the ERP (while the ERP is down, an entry up to ``max_stock_age_seconds``
old), prices from the price cache; a unit price may differ from the shopper's by at most
``price_tolerance``; a SKU the ERP does not sell is refused (``Salability``). What accepted
orders hold is subtracted inside the atomic step.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal, TypeVar

import msgspec

from contracts.v1 import (
    HeldLine,
    OrderIntake,
    OrderIntakeRequest,
    OrderValidationRequest,
    PriceCheckLine,
    PriceCheckRequest,
    SkuAvailability,
    StatusChange,
    ValidationLine,
)
from contracts.v1.intake import IntakeStatus
from contracts.v1.problems import ChangedPriceLine, ShortStockLine
from erp_backends.errors import Conflict, ErpError, ErpUnavailable, NotFound, Rejected
from erp_backends.port import CallContext, CallNotes, IdempotencyToken
from gateway.intake.holds import HeldStock
from gateway.intake.settings import IntakeSettings
from gateway.intake.store import (
    Accepted,
    AlreadySubmitted,
    IntakeRecord,
    IntakeStore,
    IntakeStoreUnavailable,
    KeyReused,
    LineNeed,
    Replayed,
    Short,
    Stale,
)
from gateway.writes.idempotency import key_reused, record_key
from policies.chain import PolicyChain

__all__ = [
    "IntakeRefused",
    "IntakeService",
    "IntakeUnavailable",
    "intake_view",
    "new_intake_id",
    "ref_key",
]

T = TypeVar("T")

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base 32, lower case


def new_intake_id() -> str:
    """``in_`` + 26 base-32 characters: 48 bits of milliseconds, then 80 random bits (sortable by time)."""
    number = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        number, digit = divmod(number, 32)
        chars.append(_ALPHABET[digit])
    return "in_" + "".join(reversed(chars))


def ref_key(client_id: str | None, external_ref: str) -> str:
    """The storefront's reference scoped to its client, as ``record_key`` scopes an idempotency
    key: two storefronts (two clients) may both have an order "1001", and neither learns of the
    other's."""
    return f"{client_id or 'anonymous'}/{external_ref}"


class IntakeRefused(Conflict):
    """409: the order cannot be accepted as it is (stock, price, a duplicate); nothing was held."""

    def __init__(self, code: str, detail: str, **extra: object) -> None:
        super().__init__(code, detail)
        self.extra = extra


class IntakeUnavailable(ErpUnavailable):
    """The intake store cannot record the order: 503, never accepted unrecorded."""

    code = "intake-unavailable"


class IntakeService:
    def __init__(self, store: IntakeStore, chain: PolicyChain, settings: IntakeSettings, holds: HeldStock) -> None:
        self.store = store
        self.holds = holds
        self._chain = chain
        self._settings = settings
        self._salability = Salability(chain, settings.salability_ttl_seconds)

    async def submit(self, request: OrderIntakeRequest, key: str, ctx: CallContext) -> tuple[IntakeRecord, bool]:
        """(the intake, replayed). Raises ``Rejected`` (422), ``IntakeRefused`` (409),
        ``IntakeUnavailable`` (503) or the ERP's failure when neither it nor the cache knows."""
        token = IdempotencyToken.for_request(record_key(ctx.client_id, key), request)
        try:
            stock = await self._stock([line.sku for line in request.lines], ctx)
            needs = _needs(request, stock)
            await self._salability.check(request, ctx)
            await self._check_prices(request, ctx)
        except ErpError:  # a retry of an accepted order is answered even when nothing else can be
            known = await self._ask(self.store.find(key=token.key))
            if known is None:
                raise
            if known.fingerprint != token.fingerprint:
                raise key_reused() from None
            return known, True
        now = time.time()
        draft = IntakeRecord(
            intake_id=new_intake_id(),
            external_ref=request.external_ref,
            key=token.key,
            fingerprint=token.fingerprint,
            request=msgspec.json.encode(request),
            holds=(),
            status="accepted",
            accepted_at=now,
            ref_key=ref_key(ctx.client_id, request.external_ref),
        )
        outcome = await self._ask(self.store.accept(draft, needs, now))
        if isinstance(outcome, Accepted):
            for hold in outcome.record.holds:
                self.holds.forget(hold.sku)
            return outcome.record, False
        if isinstance(outcome, Replayed):
            return outcome.record, True
        if isinstance(outcome, KeyReused):
            raise key_reused()
        if isinstance(outcome, AlreadySubmitted):
            link = f"/v1/order-intakes/{outcome.intake_id}"
            raise IntakeRefused(
                "order-already-submitted",
                f"order {request.external_ref!r} was submitted already under another Idempotency-Key: {link}",
                existing=link,
            )
        assert isinstance(outcome, Short)
        raise _short_refusal(request, outcome, "held")

    async def get(self, intake_id: str) -> IntakeRecord:
        record = await self._ask(self.store.get(intake_id))
        if record is None:
            raise NotFound("intake", intake_id)
        return record

    async def list(self, status: IntakeStatus | None, limit: int) -> list[IntakeRecord]:
        return await self._ask(self.store.list(status, limit))

    async def cancel(self, intake_id: str, who: str, ctx: CallContext) -> IntakeRecord:
        return await self._operate(intake_id, "cancel", who, ctx)

    async def replay(self, intake_id: str, who: str, ctx: CallContext) -> IntakeRecord:
        return await self._operate(intake_id, "replay", who, ctx)

    async def _operate(
        self, intake_id: str, action: Literal["cancel", "replay"], who: str, ctx: CallContext
    ) -> IntakeRecord:
        if action == "cancel":
            step: Awaitable[IntakeRecord | Short] = self.store.give_up(
                intake_id, None, "cancelled", f"cancelled by {who}", time.time()
            )
        else:  # judged again on the stock now: its units may have been promised since it gave them back
            found = await self.get(intake_id)
            needs: list[LineNeed] = []
            if found.status in ("rejected", "dead_lettered"):
                request = _REQUEST.decode(found.request)
                needs = _needs(request, await self._stock([line.sku for line in request.lines], ctx))
            step = self.store.replay(intake_id, f"replayed by {who}", time.time(), needs)
        try:
            outcome = await self._ask(step)
        except KeyError:
            raise NotFound("intake", intake_id) from None
        except Stale as exc:
            status = exc.record.status if exc.record else "unknown"
            raise IntakeRefused(
                "intake-not-changeable", f"intake {intake_id} is {status}: it cannot be {action}ed now"
            ) from None
        if isinstance(outcome, Short):
            raise _short_refusal(_REQUEST.decode(found.request), outcome, "replayed")
        for hold in outcome.holds:
            self.holds.forget(hold.sku)
        return outcome

    # -- the judgement ---------------------------------------------------------------------

    async def _stock(self, skus: Sequence[str], ctx: CallContext) -> dict[str, tuple[SkuAvailability | None, float]]:
        cache = self._chain.cache
        if cache is not None:
            return await cache.stock_snapshot(skus, self._settings.max_stock_age_seconds, ctx)
        read_at = time.time()
        batch = await self._chain.guarded.get_availability(list(dict.fromkeys(skus)), None, ctx)
        found: dict[str, tuple[SkuAvailability | None, float]] = {i.sku: (i, read_at) for i in batch.items}
        found.update({sku: (None, read_at) for sku in batch.unknown_skus})
        return found

    async def _check_prices(self, request: OrderIntakeRequest, ctx: CallContext) -> None:
        asked = PriceCheckRequest(
            currency=request.currency,
            customer=request.customer,
            lines=[PriceCheckLine(sku=line.sku, quantity=line.quantity) for line in request.lines],
        )
        # the price cache's own rules (TTL, stale-if-error); its notes are not this answer's
        prices = await self._chain.backend.check_prices(asked, msgspec.structs.replace(ctx, notes=CallNotes()))
        tolerance = self._settings.price_tolerance
        changed = [
            (index, line, priced.unit_price)
            for index, (line, priced) in enumerate(zip(request.lines, prices.lines, strict=True))
            if abs(priced.unit_price - line.unit_price) > tolerance
        ]
        if changed:
            said = "; ".join(f"lines[{i}] ({line.sku}): now {now}, seen {line.unit_price}" for i, line, now in changed)
            raise IntakeRefused(
                "price-changed",
                f"prices changed beyond the tolerance of {tolerance}, nothing was held: {said}",
                changed_lines=[
                    ChangedPriceLine(line=i, sku=line.sku, seen_unit_price=line.unit_price, current_unit_price=now)
                    for i, line, now in changed
                ],
            )

    @staticmethod
    async def _ask(step: Awaitable[T]) -> T:
        try:
            return await step
        except IntakeStoreUnavailable as exc:
            raise IntakeUnavailable(f"orders cannot be recorded right now: {exc}", retry_after=2) from exc


_REQUEST = msgspec.json.Decoder(OrderIntakeRequest)


class Salability:
    """Which SKUs the ERP sells, as ``validateOrder`` says (its ``not_salable`` problem), kept
    per process for ``ttl_seconds``: a flash sale on one SKU asks once, not per order. While the
    ERP cannot answer (down, its breaker open, the call budget spent) a SKU is taken as salable:
    intake never waits for the ERP, and the ERP's refusal at posting rejects such an order."""

    def __init__(self, chain: PolicyChain, ttl_seconds: float) -> None:
        self._chain = chain
        self._ttl = ttl_seconds
        self._known: dict[str, tuple[float, bool]] = {}  # sku -> (known until, salable)

    async def check(self, request: OrderIntakeRequest, ctx: CallContext) -> None:
        """``Rejected`` (422 ``not-salable``) naming the first line whose SKU is not for sale."""
        now = time.monotonic()
        unknown = list(dict.fromkeys(line.sku for line in request.lines if self._until(line.sku) <= now))
        if unknown:
            await self._learn(unknown, request.currency, ctx, now)
        for index, line in enumerate(request.lines):
            known = self._known.get(line.sku)
            if known is not None and not known[1]:
                raise Rejected("not-salable", f"SKU {line.sku!r} is not for sale", field=f"lines[{index}].sku")

    def _until(self, sku: str) -> float:
        known = self._known.get(sku)
        return known[0] if known is not None else 0.0

    async def _learn(self, skus: Sequence[str], currency: str, ctx: CallContext, now: float) -> None:
        cart = OrderValidationRequest(
            currency=currency, lines=[ValidationLine(sku=sku, quantity=1, unit_price=Decimal("0.00")) for sku in skus]
        )
        try:
            verdict = await self._chain.guarded.validate_order(cart, msgspec.structs.replace(ctx, notes=CallNotes()))
        except ErpError:  # not known now: the ERP decides at posting
            return
        refused = {p.sku for p in verdict.problems if p.code == "not_salable"}
        if len(self._known) > 50_000:  # bounded: forget what ran out
            self._known = {sku: known for sku, known in self._known.items() if known[0] > now}
        for sku in skus:
            self._known[sku] = (now + self._ttl, sku not in refused)


def _short_refusal(request: OrderIntakeRequest, short: Short, what: str) -> IntakeRefused:
    said = "; ".join(
        f"lines[{s.line}] ({s.sku}): {request.lines[s.line].quantity} requested, {s.available} available"
        for s in short.lines
    )
    return IntakeRefused(
        "insufficient-stock",
        f"not enough stock, nothing was {what}: {said}",
        short_lines=[
            ShortStockLine(line=s.line, sku=s.sku, requested=request.lines[s.line].quantity, available=s.available)
            for s in short.lines
        ],
    )


def _needs(request: OrderIntakeRequest, stock: dict[str, tuple[SkuAvailability | None, float]]) -> list[LineNeed]:
    needs: list[LineNeed] = []
    for index, line in enumerate(request.lines):
        item, snapshot_at = stock[line.sku]
        if item is None:
            raise Rejected("unknown-sku", f"SKU {line.sku!r} is unknown", field=f"lines[{index}].sku")
        candidates = [(w.warehouse, w.available_to_promise) for w in item.warehouses]
        if line.warehouse is not None:
            candidates = [c for c in candidates if c[0] == line.warehouse]
            if not candidates:
                raise Rejected(
                    "unknown-warehouse", f"warehouse {line.warehouse!r} is unknown", field=f"lines[{index}].warehouse"
                )
        needs.append(
            LineNeed(line=index, sku=line.sku, quantity=line.quantity, stock=tuple(candidates), snapshot_at=snapshot_at)
        )
    return needs


def intake_view(record: IntakeRecord) -> OrderIntake:
    """The contract's view of an intake: no contact data, no request body."""
    return OrderIntake(
        intake_id=record.intake_id,
        external_ref=record.external_ref,
        status=record.status,
        held=[HeldLine(sku=h.sku, warehouse=h.warehouse, quantity=h.quantity) for h in record.holds],
        order_number=record.order_number,
        attempts=record.round_attempts,
        last_error=record.last_error,
        history=[StatusChange(status=t.status, at=_utc(t.at), detail=t.detail) for t in record.history],
        accepted_at=_utc(record.accepted_at),
    )


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
