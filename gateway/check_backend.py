"""``erp-gateway check-backend``: read-only conformance checks against the configured ERP.

For a team connecting its own ERP: the checks are structural (an unknown order is NotFound, a
batch lists unknown SKUs apart, totals add up...) and need no particular data. Known records
(``--sku``, ``--customer``, ``--order``) unlock more checks; ``--dataset`` uses the records and
exact numbers of ``erp_backends/dataset/retail.toml``, for an ERP seeded from it. Nothing is
written: returns are only looked up.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Literal

import msgspec

from contracts.v1 import OrderValidationRequest, PriceCheckLine, PriceCheckRequest, ValidationLine
from erp_backends.dataset import Dataset, load_dataset
from erp_backends.errors import ErpError, NotFound, Rejected
from erp_backends.port import CallContext, ErpBackend

__all__ = ["CheckResult", "Subjects", "format_table", "run_checks"]

Outcome = Literal["pass", "fail", "skip"]


class Subjects(msgspec.Struct, kw_only=True, frozen=True):
    """Records known to exist in the ERP; a check that needs a missing one is skipped."""

    sku: str | None = None
    customer: str | None = None
    order: str | None = None
    currency: str = "EUR"


class CheckResult(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    outcome: Outcome
    detail: str = ""
    millis: float = 0.0


class _Skip(Exception):
    pass


def _need(value: str | None, what: str) -> str:
    if value is None:
        raise _Skip(f"needs --{what}")
    return value


def _expect(condition: bool, detail: str) -> None:
    if not condition:
        raise AssertionError(detail)


async def _rejected(call: Awaitable[object], code: str) -> str:
    try:
        await call
    except Rejected as exc:
        _expect(exc.code == code, f"rejected with {exc.code!r}, expected {code!r}")
        return f"Rejected {exc.code} (field {exc.field})"
    raise AssertionError(f"accepted; expected Rejected {code!r}")


async def _not_found(call: Awaitable[object]) -> str:
    try:
        await call
    except NotFound as exc:
        return f"NotFound ({exc.code})"
    raise AssertionError("answered; expected NotFound")


def _checks(
    backend: ErpBackend, subjects: Subjects, dataset: Dataset | None, ctx: CallContext
) -> list[tuple[str, Callable[[], Awaitable[str]]]]:
    missing = f"NO-SUCH-SKU-{uuid.uuid4().hex[:8].upper()}"

    async def ready() -> str:
        await backend.check_ready()
        return "answers"

    async def unknown_skus_apart() -> str:
        skus = [s for s in (subjects.sku, missing) if s]
        batch = await backend.get_availability(skus, None, ctx)
        _expect(batch.unknown_skus == [missing], f"unknownSkus {batch.unknown_skus}")
        _expect([i.sku for i in batch.items] == skus[:-1], f"items {[i.sku for i in batch.items]}")
        return f"{len(batch.items)} known, {len(batch.unknown_skus)} unknown"

    async def per_warehouse() -> str:
        sku = _need(subjects.sku, "sku")
        (item,) = (await backend.get_availability([sku], None, ctx)).items
        _expect(bool(item.warehouses), "no warehouse in the answer")
        for stock in item.warehouses:
            _expect(stock.available_to_promise == stock.on_hand - stock.committed, f"{stock.warehouse}: ATP")
        _expect(item.on_hand == sum(w.on_hand for w in item.warehouses), "on hand is not the warehouses' sum")
        _expect(item.available_to_promise == item.on_hand - item.committed, "ATP != on hand - committed")
        one = item.warehouses[0].warehouse
        (only,) = (await backend.get_availability([sku], [one], ctx)).items
        _expect([w.warehouse for w in only.warehouses] == [one], "warehouse filter ignored")
        return ", ".join(f"{w.warehouse}: {w.on_hand}/{w.available_to_promise}" for w in item.warehouses)

    async def unknown_warehouse() -> str:
        return await _rejected(
            backend.get_availability([subjects.sku or missing], ["NO-SUCH-WH"], ctx), "unknown-warehouse"
        )

    def _prices(customer: str | None, sku: str, quantity: int = 1, currency: str | None = None) -> PriceCheckRequest:
        return PriceCheckRequest(
            customer=customer,
            currency=currency or subjects.currency,
            lines=[PriceCheckLine(sku=sku, quantity=quantity)],
        )

    async def anonymous_price() -> str:
        answer = await backend.check_prices(_prices(None, _need(subjects.sku, "sku"), 3), ctx)
        (line,) = answer.lines
        _expect(line.unit_price == line.unit_price.quantize(Decimal("0.01")), "unit price not rounded to cents")
        _expect(line.line_total == line.unit_price * 3, "line total != unit price x quantity")
        _expect(line.source.kind == "list_price", f"anonymous source {line.source.kind}")
        return f"{line.unit_price} {answer.currency}"

    async def customer_price() -> str:
        answer = await backend.check_prices(
            _prices(_need(subjects.customer, "customer"), _need(subjects.sku, "sku")), ctx
        )
        (line,) = answer.lines
        _expect(line.unit_price <= line.list_price, "customer pays more than the list price")
        return f"{line.unit_price} ({line.source.kind} {line.source.price_list or ''})".strip()

    async def price_rejections() -> str:
        sku = subjects.sku or missing
        await _rejected(backend.check_prices(_prices(f"NO-SUCH-CUSTOMER-{missing}", sku), ctx), "unknown-customer")
        await _rejected(backend.check_prices(_prices(None, missing), ctx), "unknown-sku")
        await _rejected(backend.check_prices(_prices(None, sku, currency="XTS"), ctx), "unsupported-currency")
        return "unknown customer, unknown SKU, unsupported currency"

    async def validation() -> str:
        sku = _need(subjects.sku, "sku")
        verdict = await backend.validate_order(
            OrderValidationRequest(
                currency=subjects.currency,
                lines=[
                    ValidationLine(sku=missing, quantity=1, unit_price=Decimal("1.00")),
                    ValidationLine(sku=sku, quantity=1_000_000, unit_price=Decimal("0.01")),
                ],
            ),
            ctx,
        )
        codes = {(p.line, p.code) for p in verdict.problems}
        _expect(not verdict.valid, "an impossible cart was valid")
        _expect((0, "unknown_sku") in codes, "unknown SKU not reported")
        _expect((1, "insufficient_stock") in codes and (1, "price_changed") in codes, f"problems {sorted(codes)}")
        return f"{len(verdict.problems)} problems found"

    async def order_lookup() -> str:
        number = _need(subjects.order, "order")
        order = await backend.get_order(number, ctx)
        _expect(order.order_number == number, f"asked {number}, got {order.order_number}")
        _expect(order.total_amount == sum((li.line_total for li in order.lines), Decimal(0)), "total != lines")
        for line in order.lines:
            _expect(0 <= line.shipped_quantity <= line.quantity, f"line {line.line_ref}: shipped")
        if order.external_ref:
            found = await backend.find_orders(order.external_ref, ctx)
            _expect(number in [o.order_number for o in found.items], "not found by its external reference")
        return f"{order.status}, {len(order.lines)} lines, {len(order.shipments)} shipments"

    async def unknown_order() -> str:
        answer = await _not_found(backend.get_order(f"NO-SUCH-ORDER-{missing}", ctx))
        found = await backend.find_orders(f"NO-SUCH-REF-{missing}", ctx)
        _expect(found.items == [], "an unknown external reference found orders")
        return answer + "; unknown external reference: no orders"

    async def unknown_return() -> str:
        return await _not_found(backend.get_return(f"NO-SUCH-RMA-{missing}", ctx))

    checks: list[tuple[str, Callable[[], Awaitable[str]]]] = [
        ("ERP answers (readiness)", ready),
        ("availability lists unknown SKUs apart", unknown_skus_apart),
        ("availability answers per warehouse", per_warehouse),
        ("an unknown warehouse is rejected", unknown_warehouse),
        ("anonymous price is the list price, rounded", anonymous_price),
        ("customer price is at most the list price", customer_price),
        ("price checks reject unknown inputs", price_rejections),
        ("validation reports cart problems per line", validation),
        ("order lookup by number and reference", order_lookup),
        ("an unknown order is NotFound", unknown_order),
        ("an unknown return is NotFound", unknown_return),
    ]
    if dataset is not None:
        checks += _dataset_checks(backend, dataset, ctx)
    return checks


def _dataset_checks(
    backend: ErpBackend, dataset: Dataset, ctx: CallContext
) -> list[tuple[str, Callable[[], Awaitable[str]]]]:
    async def stock() -> str:
        committed = dataset.committed()
        batch = await backend.get_availability([p.sku for p in dataset.products], None, ctx)
        by_sku = {item.sku: item for item in batch.items}
        for product in dataset.products:
            item = by_sku.get(product.sku)
            _expect(item is not None, f"{product.sku} missing")
            assert item is not None
            for w in item.warehouses:
                want = (product.on_hand.get(w.warehouse, 0), committed.get((product.sku, w.warehouse), 0))
                _expect((w.on_hand, w.committed) == want, f"{product.sku}@{w.warehouse}: {w.on_hand}/{w.committed}")
        return f"{len(dataset.products)} SKUs x {len(dataset.warehouses)} warehouses"

    async def prices() -> str:
        answer = await backend.check_prices(
            PriceCheckRequest(
                customer="C-1001",
                currency=dataset.currency,
                lines=[PriceCheckLine(sku="TOTE-NAT", quantity=q) for q in (5, 10, 50)],
            ),
            ctx,
        )
        got = [str(line.unit_price) for line in answer.lines]
        _expect(got == ["17.10", "15.30", "13.50"], f"TOTE-NAT 5/10/50: {got}")
        return "quantity breaks of ACME-2026"

    async def orders() -> str:
        for spec in dataset.orders:
            order = await backend.get_order(spec.number, ctx)
            got = [(li.sku, li.quantity, li.shipped_quantity) for li in order.lines]
            _expect(got == [(li.sku, li.quantity, li.shipped) for li in spec.lines], f"{spec.number}: {got}")
            _expect(order.external_ref == spec.external_ref, f"{spec.number}: reference {order.external_ref}")
        return f"{len(dataset.orders)} orders"

    return [
        ("dataset: stock and commitments", stock),
        ("dataset: contract prices", prices),
        ("dataset: orders and shipped quantities", orders),
    ]


async def run_checks(
    backend: ErpBackend, subjects: Subjects | None = None, *, with_dataset: bool = False
) -> list[CheckResult]:
    """Run every check in order; an ERP error fails that check only."""
    dataset = load_dataset() if with_dataset else None
    if dataset is not None and subjects is None:
        subjects = Subjects(sku="TEE-NVY-M", customer="C-1001", order="SO-1002", currency=dataset.currency)
    ctx = CallContext(correlation_id=f"check-backend-{uuid.uuid4().hex[:12]}")
    results: list[CheckResult] = []
    for name, check in _checks(backend, subjects or Subjects(), dataset, ctx):
        started = time.perf_counter()
        outcome: Outcome = "pass"
        try:
            detail = await check()
        except _Skip as exc:
            outcome, detail = "skip", str(exc)
        except (AssertionError, ErpError, ValueError) as exc:
            outcome, detail = "fail", f"{type(exc).__name__}: {exc}"
        results.append(
            CheckResult(name=name, outcome=outcome, detail=detail, millis=(time.perf_counter() - started) * 1000)
        )
    return results


def format_table(backend: str, results: list[CheckResult]) -> str:
    width = max(len(r.name) for r in results)
    rows = [f"check-backend: {backend}", ""]
    rows += [f"{r.outcome.upper():4}  {r.name:<{width}}  {r.millis:6.0f} ms  {r.detail}" for r in results]
    counts = {o: sum(r.outcome == o for r in results) for o in ("pass", "fail", "skip")}
    rows += ["", f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped"]
    return "\n".join(rows)


def check_backend(backend: ErpBackend, subjects: Subjects | None, *, with_dataset: bool) -> tuple[str, bool]:
    """Run the checks on a fresh event loop; (table, all passed). Closes the backend."""

    async def run() -> list[CheckResult]:
        try:
            return await run_checks(backend, subjects, with_dataset=with_dataset)
        finally:
            await backend.aclose()

    results = asyncio.run(run())
    return format_table(backend.name, results), all(r.outcome != "fail" for r in results)
