"""(a) Bare Litestar returning a msgspec Struct of the same size as an availability answer."""

from __future__ import annotations

import msgspec
from litestar import Litestar, get

from bench.apps.payload import ITEM


class Stock(msgspec.Struct, rename="camel"):
    warehouse: str
    on_hand: int
    committed: int
    available_to_promise: int


class Availability(msgspec.Struct, rename="camel"):
    sku: str
    unit: str
    on_hand: int
    committed: int
    available_to_promise: int
    warehouses: list[Stock]
    as_of: str
    freshness: str


ANSWER = msgspec.convert(ITEM, Availability)


@get("/v1/availability/{sku:str}")
async def availability(sku: str) -> Availability:
    return ANSWER


app = Litestar([availability], openapi_config=None, logging_config=None)
