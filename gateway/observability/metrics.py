"""Prometheus metrics of the gateway, correct under gunicorn with several workers.

``erp-gateway serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before any
worker starts; each worker then writes its samples to memory-mapped files there and /metrics
(served by any worker) adds up every worker's files. Without that variable (tests, a single
process) the samples live in this object's own registry.

Labels are bounded: the route *template* (never a SKU or an order number), the method (unknown
ones are ``OTHER``), the status, the client id (known token clients; beyond
``metrics_max_clients`` per worker they count as ``other``), the backend, the operation and
an outcome from a closed list. Label children are bound once and kept.

Per-request samples (request count and duration, cache lookups) are tallied in plain Python
numbers and written to the Prometheus values by ``flush``: every ``FLUSH_SECONDS`` (the
telemetry's background task), before this worker renders /metrics, and at shutdown. In
multiprocess mode every write to a value is a locked write to a memory-mapped file: four of
them per request cost about as much as the rest of a cached answer (measured: 25-40 us of
70 in-process). A scrape therefore sees another worker's last second only after its flush.
ERP calls, breaker states and quota refusals are rare and written at once.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["BREAKER_STATES", "FLUSH_SECONDS", "MULTIPROC_ENV", "GatewayMetrics"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Breaker states as gauge values: the worst state of any live worker is the one shown.
BREAKER_STATES = {"closed": 0.0, "half-open": 1.0, "open": 2.0}
_METHODS = frozenset(("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"))
_REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Seconds between two writes of the tallied per-request samples.
FLUSH_SECONDS = 1.0
_ERP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)


class GatewayMetrics:
    """Every metric the gateway records, and the /metrics rendering."""

    def __init__(self, max_clients: int = 50) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # In multiprocess mode metrics are not registered anywhere: the collector reads the files.
        self.registry = CollectorRegistry(auto_describe=True)
        own: CollectorRegistry | None = None if self.multiprocess else self.registry
        if self.multiprocess:
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        self.requests = Counter(
            "erpgw_http_requests",
            "HTTP requests answered, by route template, method, status and client.",
            ("route", "method", "status", "client"),
            registry=own,
        )
        self.request_duration = Histogram(
            "erpgw_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            ("route", "method"),
            buckets=_REQUEST_BUCKETS,
            registry=own,
        )
        self.erp_duration = Histogram(
            "erpgw_erp_call_duration_seconds",
            "Duration of calls to the ERP adapter, by backend, operation and outcome.",
            ("backend", "operation", "outcome"),
            buckets=_ERP_BUCKETS,
            registry=own,
        )
        self.erp_errors = Counter(
            "erpgw_erp_call_errors",
            "ERP calls that failed (unavailable, timeout, cancelled, error), by backend and operation.",
            ("backend", "operation", "outcome"),
            registry=own,
        )
        self.erp_in_flight = Gauge(
            "erpgw_erp_calls_in_flight",
            "ERP calls under way.",
            ("backend",),
            multiprocess_mode="livesum",
            registry=own,
        )
        self.cache = Counter(
            "erpgw_cache_lookups",
            "Cached items looked up per route: hit (fresh), stale (served while refreshing or on ERP error), miss.",
            ("route", "result"),
            registry=own,
        )
        self.breaker_state = Gauge(
            "erpgw_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open (worst of the live workers).",
            ("breaker",),
            multiprocess_mode="livemax",
            registry=own,
        )
        self.quota_rejections = Counter(
            "erpgw_quota_rejections",
            "Requests refused by the per-client quota (exceeded) or because it could not be checked (store_down).",
            ("client", "reason"),
            registry=own,
        )
        self.intake_posts = Counter(
            "erpgw_intake_posts",
            "Attempts to post an accepted order to the ERP, by outcome (posted, retried, rejected, dead_lettered).",
            ("outcome",),
            registry=own,
        )
        self.shadow_reads = Counter(
            "erpgw_shadow_reads",
            "Shadow reads by shadow backend, operation and outcome (match, mismatch, error, skipped).",
            ("backend", "operation", "outcome"),
            registry=own,
        )
        self._max_clients = max_clients
        self._clients: set[str] = set()
        self._request_children: dict[tuple[str, str, int, str], tuple[Any, Any]] = {}
        self._cache_children: dict[str, tuple[Any, Any, Any]] = {}
        # Tallies since the last flush: counter child -> amount; histogram child -> [sum, per bucket...].
        self._counts: dict[Any, float] = {}
        self._observations: dict[Any, list[float]] = {}

    # -- bounded labels -------------------------------------------------------------------

    def client_label(self, client_id: str | None) -> str:
        if client_id is None:
            return "anonymous"
        clients = self._clients
        if client_id in clients:
            return client_id
        if len(clients) < self._max_clients:
            clients.add(client_id)
            return client_id
        return "other"

    # -- recording ------------------------------------------------------------------------

    def observe_request(self, route: str, method: str, status: int, client: str, seconds: float) -> None:
        if method not in _METHODS:
            method = "OTHER"
        key = (route, method, status, client)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status), client),
                self.request_duration.labels(route, method),
            )
            self._request_children[key] = children
        counts = self._counts
        counts[children[0]] = counts.get(children[0], 0) + 1
        tally = self._observations.get(children[1])
        if tally is None:
            tally = self._observations[children[1]] = [0.0] * (len(_REQUEST_BUCKETS) + 2)
        tally[0] += seconds
        tally[1 + bisect_left(_REQUEST_BUCKETS, seconds)] += 1  # the first bucket with seconds <= le

    def observe_cache(self, route: str, hits: int, misses: int, stale: int) -> None:
        children = self._cache_children.get(route)
        if children is None:
            children = self._cache_children[route] = (
                self.cache.labels(route, "hit"),
                self.cache.labels(route, "miss"),
                self.cache.labels(route, "stale"),
            )
        counts = self._counts
        for child, amount in zip(children, (hits, misses, stale), strict=True):
            if amount:
                counts[child] = counts.get(child, 0) + amount

    def flush(self) -> None:
        """Write the tallied per-request samples to the Prometheus values."""
        counts, self._counts = self._counts, {}
        observations, self._observations = self._observations, {}
        for child, amount in counts.items():
            child.inc(amount)
        for child, tally in observations.items():
            # prometheus_client has no bulk observe: its histogram child is a sum and one value
            # per bucket (non-cumulative), exactly what observe() increments one at a time.
            child._sum.inc(tally[0])
            for bucket, amount in zip(child._buckets, tally[1:], strict=True):
                if amount:
                    bucket.inc(amount)

    def observe_intake_post(self, outcome: str) -> None:
        """One posting attempt's outcome (rare next to requests: written at once)."""
        self.intake_posts.labels(outcome).inc()

    def observe_shadow(self, backend: str, operation: str, outcome: str) -> None:
        """One shadow read's outcome (``gateway.routing.shadow``)."""
        self.shadow_reads.labels(backend, operation, outcome).inc()

    def set_breaker_state(self, breaker: str, state: str) -> None:
        self.breaker_state.labels(breaker).set(BREAKER_STATES.get(state, 2.0))

    def render(self) -> bytes:
        """The text exposition of every worker's samples (or this process's)."""
        self.flush()
        return generate_latest(self.registry)
