"""The availability answer every reference server returns: same shape and size as the gateway's."""

from __future__ import annotations

ITEM = {
    "sku": "TEE-NVY-M",
    "unit": "unit",
    "onHand": 180,
    "committed": 2,
    "availableToPromise": 178,
    "warehouses": [
        {"warehouse": "EAST", "onHand": 80, "committed": 2, "availableToPromise": 78},
        {"warehouse": "WEST", "onHand": 100, "committed": 0, "availableToPromise": 100},
    ],
    "asOf": "2026-11-28T10:00:00.000000Z",
    "freshness": "cached",
}
