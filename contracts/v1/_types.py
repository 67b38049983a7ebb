"""Named constraint aliases used across the v1 contracts."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from msgspec import Meta

__all__ = [
    "MAX_BATCH_SKUS",
    "MINOR_UNIT",
    "MONEY_PATTERN",
    "PATH_REFERENCE_PATTERN",
    "REFERENCE_MAX_LENGTH",
    "REFERENCE_PATTERN",
    "CurrencyCode",
    "CustomerRef",
    "ExternalRef",
    "Freshness",
    "IdempotencyKey",
    "LineRef",
    "Money",
    "OrderNumber",
    "Quantity",
    "RmaNumber",
    "Sku",
    "WarehouseCode",
]

#: How fresh an answer is: ``fresh`` came from the ERP for this request, ``cached`` from the
#: gateway's cache within its time-to-live, ``stale`` from the cache past it (while the ERP is
#: being asked again, or because the ERP is failing). ``asOf`` says when the ERP said it.
Freshness = Literal["fresh", "cached", "stale"]

#: Largest number of SKUs one availability batch may ask for.
MAX_BATCH_SKUS = 200

#: SKUs, order and return numbers: what they may look like on the wire, in bodies and in paths.
REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"
REFERENCE_MAX_LENGTH = 64
#: The same references where they are one path segment (``/v1/orders/{orderNumber}``): without
#: ``/``, which a path cannot carry, not even percent-encoded (``%2F`` is decoded before routing,
#: so ``/v1/availability/A%2FB`` is the path ``/v1/availability/A/B``, which names no route).
PATH_REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"

Sku = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=REFERENCE_MAX_LENGTH,
        pattern=REFERENCE_PATTERN,
        description="Stock-keeping unit as the storefront and the ERP know it.",
        examples=["TEE-NVY-M"],
    ),
]
WarehouseCode = Annotated[
    str,
    Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$", description="Warehouse code.", examples=["EAST"]),
]
CustomerRef = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Customer reference in the ERP.",
        examples=["C-1001"],
    ),
]
OrderNumber = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=REFERENCE_MAX_LENGTH,
        pattern=REFERENCE_PATTERN,
        description="ERP order number.",
        examples=["SO-1002"],
    ),
]
ExternalRef = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="The storefront's own order id, kept on the ERP order.",
        examples=["WC-5002"],
    ),
]
RmaNumber = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=REFERENCE_MAX_LENGTH,
        pattern=REFERENCE_PATTERN,
        description="Return authorization number.",
        examples=["RMA-000001"],
    ),
]
LineRef = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Reference of a line on the ERP order.",
        examples=["1"],
    ),
]
CurrencyCode = Annotated[str, Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code.", examples=["EUR"])]
Quantity = Annotated[int, Meta(ge=1, le=1_000_000, description="Whole units of the SKU's sales unit.", examples=[2])]
#: Decimals of the minor unit of every currency the gateway prices in (EUR, USD, GBP, SEK: 2),
#: stated in price answers as ``rounding.minorUnit``.
MINOR_UNIT = 2
#: Money on the wire: a finite decimal string, at most 12 integer digits and the currency's
#: minor unit of decimals, no exponent, no leading zeros. Requests are held to it when decoded
#: (``gateway.decoding``); the spec states it for every Money field (``gateway.routes._openapi``).
#: A currency with more decimals would widen it, which no published client breaks on for requests.
MONEY_PATTERN = rf"^-?(0|[1-9][0-9]{{0,11}})(\.[0-9]{{1,{MINOR_UNIT}}})?$"
Money = Annotated[
    Decimal,
    Meta(
        description=(
            "Amount as a decimal string in the stated currency (`19.90`), never a number: a JSON "
            "number, an exponent, `NaN` or `Infinity` is refused. Unit prices and totals are "
            "rounded half-up to the currency's minor unit."
        ),
        examples=["19.90"],
    ),
]
IdempotencyKey = Annotated[
    str, Meta(min_length=8, max_length=128, pattern=r"^[\x21-\x7e]+$", description="Client-chosen idempotency key.")
]
