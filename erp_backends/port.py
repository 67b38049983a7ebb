"""The ERP port: one async method per contract operation, contract types in and out.

Every backend (the embedded ``sample``, ``tryton``, ...) implements ``ErpBackend``; policies
(caching, throttling, circuit breaking) wrap one and look like one, so routes never know
which they talk to. Failures are raised as ``erp_backends.errors`` exceptions only.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Sequence

import msgspec

from contracts.v1 import (
    AvailabilityBatch,
    Order,
    OrderIntakeRequest,
    OrderList,
    OrderValidation,
    OrderValidationRequest,
    PriceCheck,
    PriceCheckRequest,
    ReturnAuthorization,
    ReturnRequest,
)

__all__ = ["CallContext", "CallNotes", "ErpBackend", "IdempotencyToken", "OrderOutcome", "ReturnOutcome"]


class CallNotes:
    """What the cache did for one call (or one request's calls): filled by the caching policy,
    read by whoever answers (``Cache-Status``, metrics). One per request, carried by its
    ``CallContext``, so a background task holding another context can never write into it."""

    __slots__ = ("backend", "collapsed", "hits", "misses", "read_at", "sampled", "stale", "stale_if_error", "ttl")

    def __init__(self) -> None:
        self.hits = self.misses = self.stale = 0
        self.collapsed = self.stale_if_error = False
        #: Seconds of freshness left of the least fresh entry served (None: none served).
        self.ttl: float | None = None
        #: When each SKU's stock served was read from the ERP (epoch seconds, taken before the
        #: call was sent), where the cache knows it: what holds it does not show yet is judged by.
        self.read_at: dict[str, float] = {}
        #: The named backend that answered (routing: the ``ERP-Backend`` header); None: none did.
        self.backend: str | None = None
        #: Shadow reads drew this request already (the hot path): True sampled, False not.
        self.sampled: bool | None = None

    def hit(self, ttl: float) -> None:
        """One entry served from the cache with ``ttl`` seconds of freshness left."""
        self.hits += 1
        self.ttl = ttl if self.ttl is None else min(self.ttl, ttl)


class CallContext(msgspec.Struct, frozen=True, kw_only=True):
    """Who asked and how to correlate the call; passed to every backend call."""

    correlation_id: str
    client_id: str | None = None
    #: The sales channel the caller's token names (``web``, ``pos``), if any.
    channel: str | None = None
    traceparent: str | None = None
    #: Where the cache reports what it did for this call; None: nobody reads it.
    notes: CallNotes | None = None


class IdempotencyToken(msgspec.Struct, frozen=True, kw_only=True):
    """The caller's ``Idempotency-Key`` with a fingerprint of the request it came with.

    The backend stores both with the document it creates. The same key with the same
    fingerprint replays; the same key with another fingerprint is refused.
    """

    key: str
    fingerprint: str

    @classmethod
    def for_request(cls, key: str, request: msgspec.Struct) -> IdempotencyToken:
        digest = hashlib.sha256(msgspec.json.encode(request)).hexdigest()
        return cls(key=key, fingerprint=digest)


class ReturnOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """A return authorization, and whether it was created now or found by its key."""

    authorization: ReturnAuthorization
    replayed: bool


class OrderOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """The ERP order an intake became, and whether it was created now or found by its key."""

    order_number: str
    replayed: bool


class ErpBackend(abc.ABC):
    """What the gateway needs from an ERP. ``name``, set on each instance by the composition root
    (default: the adapter's kind), labels logs, metrics, readiness, breakers and cache keys."""

    name: str

    @abc.abstractmethod
    async def get_availability(
        self, skus: Sequence[str], warehouses: Sequence[str] | None, ctx: CallContext
    ) -> AvailabilityBatch:
        """Stock per SKU (unknown SKUs listed apart); ``warehouses`` None means all."""

    @abc.abstractmethod
    async def check_prices(self, request: PriceCheckRequest, ctx: CallContext) -> PriceCheck:
        """Unit prices for a cart, for the customer or anonymously."""

    @abc.abstractmethod
    async def validate_order(self, request: OrderValidationRequest, ctx: CallContext) -> OrderValidation:
        """Judge a cart against current stock and prices; writes nothing."""

    @abc.abstractmethod
    async def get_order(self, order_number: str, ctx: CallContext) -> Order:
        """One order by its ERP number; ``NotFound`` when unknown."""

    @abc.abstractmethod
    async def find_orders(self, external_ref: str, ctx: CallContext) -> OrderList:
        """Orders carrying the storefront's reference (usually one, none when unknown)."""

    @abc.abstractmethod
    async def create_return(
        self, request: ReturnRequest, idempotency: IdempotencyToken, ctx: CallContext
    ) -> ReturnOutcome:
        """Authorize a return once per idempotency key, whatever retries happen."""

    @abc.abstractmethod
    async def create_order(
        self, request: OrderIntakeRequest, idempotency: IdempotencyToken, ctx: CallContext
    ) -> OrderOutcome:
        """Create the sales order once per idempotency key, whatever retries happen: the key is
        stored on the ERP document and looked up before creating, so a retry after a lost answer
        or a crash finds the order (``replayed``). Lines at the request's unit prices, committed
        per the backend's settings. ``Rejected`` for what the ERP refuses (an unknown or unsalable
        SKU, an unknown customer): a business rejection that no retry changes."""

    @abc.abstractmethod
    async def get_return(self, rma_number: str, ctx: CallContext) -> ReturnAuthorization:
        """A return authorization by number; ``NotFound`` when unknown."""

    async def start(self, ctx: CallContext) -> None:  # noqa: B027 - optional hook, most backends need none
        """Log in and load reference data, once per worker, before the first call needs them.

        Called at worker start-up and awaited (outside any request's timeout) before calls; may
        be called again after it failed. Raise ``ErpUnavailable``/``ErpTimeout`` when the ERP
        cannot be reached.
        """

    @abc.abstractmethod
    async def check_ready(self) -> None:
        """Return when the ERP answers; raise ``ErpUnavailable``/``ErpTimeout`` otherwise."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections; called once at shutdown."""
