"""Shadow reads' report (``GET /v1/admin/shadow/mismatches``): where a second backend answered
a read unlike the one that served it, field by field."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from msgspec import Meta

from contracts._base import Response

__all__ = ["ShadowDifference", "ShadowMismatch", "ShadowReport"]


class ShadowDifference(Response):
    path: Annotated[
        str,
        Meta(
            description=(
                "Where the answers differ: field names, and list items by their identity "
                "(`items[sku=TEE-NVY-M].warehouses[warehouse=EAST].availableToPromise`); empty: the whole answer."
            )
        ),
    ]
    primary: Annotated[Any, Meta(description="The answering backend's value (null: absent; contact data withheld).")]
    shadow: Annotated[Any, Meta(description="The shadow backend's value (null: absent; contact data withheld).")]


class ShadowMismatch(Response):
    at: datetime
    operation: Annotated[str, Meta(description="The port operation, e.g. `get_availability`.")]
    subject: Annotated[str, Meta(description="What was asked: SKUs, a customer reference, an order number.")]
    primary: Annotated[str, Meta(description="The backend that answered the caller.")]
    shadow: Annotated[str, Meta(description="The backend asked beside it.")]
    differences: list[ShadowDifference]


class ShadowReport(Response):
    items: Annotated[list[ShadowMismatch], Meta(description="The newest mismatches first.")]
