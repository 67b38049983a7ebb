"""Settings of order intake (``[intake]``, ``ERPGW_INTAKE__*``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import msgspec

from policies.caching import CacheSettings

__all__ = ["IntakeSettings"]


class IntakeSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: Serve ``POST /v1/orders`` and the intake routes at all.
    enabled: bool = True
    #: SQLite file of the intake store when no Redis is configured (every worker of one host).
    path: str = "var/intake.sqlite"
    #: While the ERP cannot answer, stock read up to this many seconds ago still decides an
    #: order (while it answers, a cache entry within its TTL, else the ERP now).
    max_stock_age_seconds: float = 300.0
    #: Most a unit price may differ from the one the shopper saw (in the currency) and still be accepted.
    price_tolerance: Decimal = Decimal("0.00")
    #: Seconds a process believes what the ERP said of a SKU's salability (catalog data: it
    #: changes seldom). A SKU not known within them is asked about once (``validateOrder``);
    #: while the ERP cannot answer, the order is accepted and the ERP's refusal at posting
    #: rejects it.
    salability_ttl_seconds: float = 300.0
    #: Post accepted orders from the gateway's own workers (off: run ``erp-gateway worker``).
    post_in_workers: bool = True
    #: Port ``erp-gateway worker`` serves Prometheus metrics on (``/metrics``, at ``server.host``):
    #: its posts, ERP calls and breaker states; 0: none.
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    #: Orders one process posts at once (the ERP call budget bounds them too).
    posting_concurrency: int = 4
    #: Attempts before an order the ERP keeps failing on is dead-lettered.
    max_attempts: int = 10
    #: First retry delay; doubled per attempt, with full jitter, up to ``max_backoff_seconds``.
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 300.0
    #: Seconds a worker holds an order it posts; must outlast the ERP write timeout (a worker
    #: killed mid-post leaves the order to another after this long).
    lease_seconds: float = 60.0
    #: Seconds a posting worker sleeps when nothing is due (it wakes earlier for due retries).
    idle_seconds: float = 0.5
    #: Days an intake that ended (posted, rejected, dead-lettered, cancelled) is kept, with its
    #: Idempotency-Key and externalRef: a retry or a duplicate within them finds it.
    retention_days: float = 30.0

    def posted_hold_seconds(self, cache: CacheSettings) -> float:
        """How long a posted order's hold is kept: longer than the oldest stock snapshot anything
        judges on or answers (intake: ``max_stock_age_seconds``; availability answers: a cache
        entry's TTL and its longest stale window), so no snapshot read before the ERP had the
        order outlives the hold that covers it."""
        rule = cache.availability
        answered = rule.ttl_seconds + max(rule.stale_while_revalidate_seconds, rule.stale_if_error_seconds)
        return max(self.max_stock_age_seconds, answered) + 120.0
