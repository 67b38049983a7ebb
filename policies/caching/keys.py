"""Cache keys, built and parsed in this one place, each under its backend's namespace.

    cache:<namespace>:avail:<sku>
    cache:<namespace>:price:<currency>:<customer or ->:<sku>:<quantity>
    cache:<namespace>:order:<order number>
    cache:<namespace>:orderref:<storefront reference>    (the order numbers carrying it)
    cache:<namespace>:gone:...                           (invalidation stamps, see ``guards``)

Two backends with different namespaces never read each other's entries or stamps. References
never hold ``:`` (``contracts.v1._types.REFERENCE_PATTERN``), so every part parses back.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["CacheKeys"]


class CacheKeys:
    """The keys of one backend's entries (logical keys: the shared store adds its own prefix)."""

    def __init__(self, namespace: str) -> None:
        if not namespace or ":" in namespace:
            raise ValueError(f"a cache namespace is a non-empty name without ':', not {namespace!r}")
        self.namespace = namespace
        root = f"cache:{namespace}:"
        self._avail = root + "avail:"
        self._price = root + "price:"
        self._order = root + "order:"
        self._ref = root + "orderref:"
        self._prices_of_sku = root + "gone:price-sku:"
        self._prices_of_customer = root + "gone:price-customer:"
        self._order_refs = root + "gone:orderref"

    # -- items ----------------------------------------------------------------------------

    def availability(self, sku: str) -> str:
        return self._avail + sku

    def sku_of(self, key: str) -> str:
        return key[len(self._avail) :]

    def price(self, currency: str, customer: str | None, sku: str, quantity: int) -> str:
        return f"{self._price}{currency}:{customer or '-'}:{sku}:{quantity}"

    def price_line_of(self, key: str) -> tuple[str, int]:
        """(SKU, quantity) of a price key."""
        _, sku, quantity = key.rsplit(":", 2)
        return sku, int(quantity)

    def order(self, order_number: str) -> str:
        return self._order + order_number

    def order_number_of(self, key: str) -> str:
        return key[len(self._order) :]

    def order_ref(self, external_ref: str) -> str:
        return self._ref + external_ref

    def ref_of(self, key: str) -> str:
        return key[len(self._ref) :]

    # -- invalidation ---------------------------------------------------------------------

    def guards(self, key: str) -> tuple[str, ...]:
        """The stamp keys, besides the item's own key, whose invalidations drop ``key``: derived
        from the key alone, so a lookup asks for them in the same round trip."""
        if key.startswith(self._price):  # ...price:{currency}:{customer}:{sku}:{quantity}
            _, customer, sku, _ = key[len(self._price) :].split(":", 3)
            return (self._prices_of_sku + sku, self._prices_of_customer + customer)
        if key.startswith(self._ref):
            return (self._order_refs,)
        return ()

    def invalidation(
        self, skus: Sequence[str], customers: Sequence[str], orders: Sequence[str]
    ) -> tuple[list[str], list[str]]:
        """(item keys to tombstone, stamp keys to set) that drop these SKUs (stock and prices),
        customers' prices and orders (and every storefront-reference index, which may name them)."""
        keys = [self.availability(sku) for sku in skus] + [self.order(number) for number in orders]
        stamps = [self._prices_of_sku + sku for sku in skus] + [self._prices_of_customer + c for c in customers]
        if orders:
            stamps.append(self._order_refs)
        return keys, stamps
