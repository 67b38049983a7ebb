"""A 100k-SKU catalog through the in-process cache tier: memory stays bounded, lookups flat.

Fills a worker's tier (``policies.caching.TieredStore``, as the gateway builds it, without
Redis) with availability answers for 1k, 10k and 100k distinct SKUs, and after each step
reports the memory the tier holds once every entry has been served (tracemalloc; an entry keeps
its answer's JSON) and what a lookup of a cached SKU costs. The
tier keeps ``cache.local_max_entries`` (20,000 by default), least recently used out first, so
past that the memory must stop growing and the lookup cost must not move.
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

from contracts.v1 import SkuAvailability, WarehouseStock
from erp_backends.sample import SampleBackend, SampleSettings
from gateway.shared_state import RedisSettings, open_shared_state
from policies.caching import CacheSettings, CachingBackend

__all__ = ["CatalogStep", "measure_catalog"]

STEPS = (1_000, 10_000, 100_000)
LOOKUPS = 50_000


class CatalogStep:
    def __init__(self, skus: int, entries: int, megabytes: float, lookup_us: float) -> None:
        self.skus = skus
        self.entries = entries
        self.megabytes = megabytes
        self.lookup_us = lookup_us


def _item(sku: str, as_of: datetime) -> SkuAvailability:
    stock = [
        WarehouseStock(warehouse="EAST", on_hand=80, committed=2, available_to_promise=78),
        WarehouseStock(warehouse="WEST", on_hand=100, committed=0, available_to_promise=100),
    ]
    return SkuAvailability(
        sku=sku, unit="unit", on_hand=180, committed=2, available_to_promise=178, warehouses=stock, as_of=as_of
    )


async def _fill(cache: CachingBackend, start: int, stop: int, as_of: datetime) -> None:
    for first in range(start, stop, 1000):
        batch = range(first, min(stop, first + 1000))
        await cache.store.put_many(
            ((cache.keys.availability(f"SKU-{i:06d}"), _item(f"SKU-{i:06d}", as_of), 300.0) for i in batch),
            read_at=time.time(),
        )


async def _measure(settings: CacheSettings, workdir: Path) -> list[CatalogStep]:
    as_of = datetime.now(UTC)
    redis = open_shared_state(RedisSettings())  # no Redis: the in-process tier alone
    erp = SampleBackend(SampleSettings(path=str(workdir / "sample.sqlite")))  # never called: every read is cached
    steps: list[CatalogStep] = []
    try:
        # Memory: what the tier holds after each step (traced allocations, collected first).
        cache = CachingBackend(erp, redis, settings)
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        held: list[float] = []
        filled = 0
        for target in STEPS:
            await _fill(cache, filled, target, as_of)
            filled = target
            for i in range(max(0, filled - settings.local_max_entries), filled):
                cache.cached_availability(f"SKU-{i:06d}")  # every entry served once: its JSON is kept too
            gc.collect()
            held.append((tracemalloc.get_traced_memory()[0] - base) / 1e6)
        tracemalloc.stop()
        # Lookup cost: the hot path's read of a SKU the tier still holds, without tracing.
        cache = CachingBackend(erp, redis, settings)
        filled = 0
        for target, megabytes in zip(STEPS, held, strict=True):
            await _fill(cache, filled, target, as_of)
            filled = target
            resident = range(max(0, filled - settings.local_max_entries), filled)
            # spread over every resident SKU (a prime stride), so the LRU order is exercised too
            picks = [f"SKU-{resident[(i * 7919) % len(resident)]:06d}" for i in range(LOOKUPS)]
            start = time.perf_counter()
            for sku in picks:
                if cache.cached_availability(sku) is None:
                    raise RuntimeError(f"{sku} should be cached")
            lookup = (time.perf_counter() - start) / LOOKUPS * 1e6
            steps.append(CatalogStep(target, cache.store.size, megabytes, lookup))
    finally:
        await erp.aclose()
    return steps


def measure_catalog(settings: CacheSettings | None = None) -> list[CatalogStep]:
    with tempfile.TemporaryDirectory(prefix="erpgw-catalog-") as workdir:
        return asyncio.run(_measure(settings or CacheSettings(), Path(workdir)))


if __name__ == "__main__":
    for step in measure_catalog():
        print(
            f"{step.skus:>7} SKUs: {step.entries:>6} entries, {step.megabytes:6.1f} MB, {step.lookup_us:.2f} us/lookup"
        )
