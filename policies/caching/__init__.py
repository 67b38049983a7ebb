"""Caching: read operations answered from a two-tier cache, per item, with coalesced misses.

``keys`` (entry and stamp keys, per backend namespace), ``store`` (the two tiers, settings,
invalidation stamps), ``single_flight`` (concurrent misses share one fetch), ``backend``
(``CachingBackend``, the policy itself). This module only re-exports.
"""

from policies.caching.backend import CachingBackend
from policies.caching.keys import CacheKeys
from policies.caching.single_flight import SingleFlight
from policies.caching.store import BackgroundTasks, CacheSettings, OperationCache, TieredStore

__all__ = [
    "BackgroundTasks",
    "CacheKeys",
    "CacheSettings",
    "CachingBackend",
    "OperationCache",
    "SingleFlight",
    "TieredStore",
]
