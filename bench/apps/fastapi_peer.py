"""(c) The peer a team would otherwise write: FastAPI + pydantic, a dict lookup, async handler."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from bench.apps.payload import ITEM


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Stock(Model):
    warehouse: str
    on_hand: int
    committed: int
    available_to_promise: int


class Availability(Model):
    sku: str
    unit: str
    on_hand: int
    committed: int
    available_to_promise: int
    warehouses: list[Stock]
    as_of: str
    freshness: str


STOCK = {ITEM["sku"]: ITEM}
app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/v1/availability/{sku}", response_model=Availability, response_model_by_alias=True)
async def availability(sku: str) -> Availability:
    found = STOCK.get(sku)
    if found is None:
        raise HTTPException(status_code=404)
    return Availability.model_validate(found)
