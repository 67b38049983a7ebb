"""Typed views of the retail dataset (``retail.toml``) and its loader.

Loading validates the file, so a typo in it fails loudly.
"""

from __future__ import annotations

import hashlib
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Literal

import msgspec

__all__ = [
    "DATASET_PATH",
    "Address",
    "Customer",
    "Dataset",
    "Order",
    "OrderLine",
    "PriceList",
    "PriceRule",
    "Product",
    "Shipment",
    "ShipmentLine",
    "Warehouse",
    "dataset_digest",
    "load_dataset",
]

DATASET_PATH = Path(__file__).with_name("retail.toml")


class _Item(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class Warehouse(_Item):
    code: str
    name: str


class Address(_Item):
    street: str
    postal_code: str
    city: str
    country: str


class Customer(_Item):
    reference: str
    name: str
    email: str | None = None
    phone: str | None = None
    address: Address | None = None
    price_list: str | None = None


class PriceRule(_Item):
    id: str
    min_quantity: int
    discount_percent: Decimal
    sku: str | None = None


class PriceList(_Item):
    code: str
    name: str
    rules: list[PriceRule]


class Product(_Item):
    sku: str
    name: str
    unit: str
    list_price: Decimal
    salable: bool
    on_hand: dict[str, int]


class OrderLine(_Item):
    ref: str
    sku: str
    quantity: int
    unit_price: Decimal
    shipped: int


class ShipmentLine(_Item):
    sku: str
    quantity: int


class Shipment(_Item):
    number: str
    state: Literal["shipped", "pending"]
    lines: list[ShipmentLine]
    shipped_on: str | None = None
    tracking: str | None = None


class Order(_Item):
    number: str
    customer: str
    ordered_on: str
    warehouse: str
    state: Literal["open", "cancelled"]
    invoice: Literal["none", "invoiced"]
    payment: Literal["unpaid", "paid"]
    lines: list[OrderLine]
    shipments: list[Shipment]
    external_ref: str | None = None


class Dataset(_Item):
    version: int
    currency: str
    company: str
    warehouses: list[Warehouse]
    customers: list[Customer]
    price_lists: list[PriceList]
    orders: list[Order]
    products: list[Product]

    def committed(self) -> dict[tuple[str, str], int]:
        """Quantity committed to open orders per (sku, warehouse): ordered minus shipped."""
        out: dict[tuple[str, str], int] = {}
        for order in self.orders:
            if order.state == "cancelled":
                continue
            for line in order.lines:
                key = (line.sku, order.warehouse)
                out[key] = out.get(key, 0) + line.quantity - line.shipped
        return out


def load_dataset(path: Path = DATASET_PATH) -> Dataset:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    return msgspec.convert(raw, Dataset, strict=False)


def dataset_digest(path: Path = DATASET_PATH) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
