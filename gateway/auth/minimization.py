"""Field-level data minimization at the edge: order lookups hide customer contact data unless
the caller holds ``orders:read:pii``. Backends always return full orders; routes call this."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.v1 import Order, OrderList
from gateway.auth.scopes import PII_SCOPE
from gateway.identity import client_identity

__all__ = ["may_see_pii", "minimize_order", "minimize_orders"]


def may_see_pii(scope: Any) -> bool:
    identity = client_identity(scope)
    return identity is not None and PII_SCOPE in identity.scopes


def minimize_order(order: Order, scope: Any) -> Order:
    """``order`` with the customer's email, phone and address set to null, unless the caller may see them."""
    if may_see_pii(scope):
        return order
    return _without_contact(order)


def minimize_orders(orders: OrderList, scope: Any) -> OrderList:
    if may_see_pii(scope):
        return orders
    return msgspec.structs.replace(orders, items=[_without_contact(o) for o in orders.items])


def _without_contact(order: Order) -> Order:
    customer = msgspec.structs.replace(order.customer, email=None, phone=None, address=None)
    return msgspec.structs.replace(order, customer=customer)
