"""``erp-gateway check-backend --compare A B``: the dataset's reads asked of two configured
backends and their answers compared (``compare``), before any traffic is shadowed.

The reads: stock of every SKU, prices of every SKU for the anonymous list and each customer,
a one-unit cart of every SKU validated, every order looked up by number and by its reference.
Nothing is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal

from contracts.v1 import OrderValidationRequest, PriceCheckLine, PriceCheckRequest, ValidationLine
from erp_backends.dataset import Dataset
from erp_backends.errors import ErpError, NotFound, Rejected
from erp_backends.port import CallContext, ErpBackend
from gateway.routing.compare import Difference, differences

__all__ = ["Comparison", "compare_backends", "format_comparison"]

Comparison = tuple[str, str, list[Difference]]  # (operation, subject, differences)
Read = Callable[[ErpBackend], Awaitable[object]]


async def compare_backends(
    a: ErpBackend, b: ErpBackend, dataset: Dataset, ignore: Sequence[str] = ()
) -> tuple[int, list[Comparison]]:
    """(reads made, the ones whose answers differ but for the known differences ``ignore``)."""
    ctx = CallContext(correlation_id=f"compare-{uuid.uuid4().hex[:12]}")
    skus = [p.sku for p in dataset.products]
    reads: list[tuple[str, str, Read]] = []

    def stock(part: list[str]) -> Read:
        return lambda backend: backend.get_availability(part, None, ctx)

    def prices(request: PriceCheckRequest) -> Read:
        return lambda backend: backend.check_prices(request, ctx)

    def validation(cart: OrderValidationRequest) -> Read:
        return lambda backend: backend.validate_order(cart, ctx)

    def order(number: str) -> Read:
        return lambda backend: backend.get_order(number, ctx)

    def by_reference(ref: str) -> Read:
        return lambda backend: backend.find_orders(ref, ctx)

    batches = [skus[start : start + 200] for start in range(0, len(skus), 200)]
    reads += [("get_availability", f"{len(part)} SKUs", stock(part)) for part in batches]
    for customer in [None, *(c.reference for c in dataset.customers)]:
        for part in batches:
            lines = [PriceCheckLine(sku=sku, quantity=1) for sku in part]
            request = PriceCheckRequest(customer=customer, currency=dataset.currency, lines=lines)
            reads.append(("check_prices", f"customer={customer or '-'}", prices(request)))
    for product in dataset.products:
        cart = OrderValidationRequest(
            currency=dataset.currency,
            lines=[ValidationLine(sku=product.sku, quantity=1, unit_price=Decimal(product.list_price))],
        )
        reads.append(("validate_order", f"skus={product.sku}", validation(cart)))
    for spec in dataset.orders:
        reads.append(("get_order", f"order={spec.number}", order(spec.number)))
        if spec.external_ref:
            reads.append(("find_orders", f"externalRef={spec.external_ref}", by_reference(spec.external_ref)))
    found: list[Comparison] = []
    for operation, subject, read in reads:
        left, right = await _answer(read, a), await _answer(read, b)
        diff = differences(left, right, ignore=ignore)
        if not diff and isinstance(left, _Failed):  # both down alike proves nothing
            diff = [Difference(path="", primary=left.error, shadow=right.error if isinstance(right, _Failed) else "")]
        if diff:
            found.append((operation, subject, diff))
    return len(reads), found


class _Failed(dict[str, str]):
    """A backend that could not answer (down, timed out): never alike with anything."""

    @property
    def error(self) -> str:
        return self["error"]


async def _answer(read: Read, backend: ErpBackend) -> object:
    """The answer, or the refusal as a value (two ERPs refusing alike agree: an unknown order
    is NotFound on both), or ``_Failed``."""
    try:
        return await read(backend)
    except (NotFound, Rejected) as exc:
        return {"refused": type(exc).__name__, "code": getattr(exc, "code", "")}
    except ErpError as exc:
        return _Failed(error=f"{type(exc).__name__}: {exc}")


def format_comparison(a: str, b: str, reads: int, found: list[Comparison]) -> str:
    rows = [f"check-backend --compare {a} {b}: {reads} reads", ""]
    for operation, subject, diff in found:
        rows.append(f"{operation} {subject}:")
        rows += [f"  {d.path or '(answer)'}: {a}={d.primary!r} {b}={d.shadow!r}" for d in diff]
    rows += ["", f"{len(found)} of {reads} reads differ" if found else f"all {reads} reads alike"]
    return "\n".join(rows)
