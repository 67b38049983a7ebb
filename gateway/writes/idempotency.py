"""The gateway-side idempotency record: one attempt per ``Idempotency-Key`` at a time.

Semantics (IETF httpapi Idempotency-Key draft, as Stripe runs it):

- the first request with a key *claims* it (a record ``in progress`` with the request's
  fingerprint, leased for ``lease_seconds``) and performs the write;
- a request with the same key and another body is refused: 422 ``idempotency-key-reused``;
- one that arrives while the first is in progress gets 409 ``idempotency-request-in-progress``
  with ``Retry-After`` (the lease left), never a second attempt;
- once the write succeeded, its answer is stored for ``ttl_seconds`` and replayed as it was
  (``Idempotent-Replayed: true``); after that the ERP-side lookup by key still replays;
- a failed attempt (ERP down, timeout, business refusal) releases the key, so a retry runs
  again; the ERP-side lookup (the key is stored on the ERP document, looked up before
  creating) makes that retry adopt whatever the failed attempt did create.

A worker killed mid-write leaves the claim until its lease runs out; then a retry claims it
again and the ERP-side lookup finds what was created. The store is ``IdempotencyStore``
(adapters in ``idempotency_stores``): Redis across instances, a SQLite file across the
workers of one host, and Redis with the SQLite file as its fallback while Redis is down.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec

from erp_backends.errors import ErpUnavailable, InProgress, Rejected

__all__ = [
    "Claim",
    "IdempotencySettings",
    "IdempotencyStore",
    "IdempotentWrites",
    "RequestInProgress",
    "StoreUnavailable",
    "StoredAnswer",
    "record_key",
]

log = logging.getLogger("erp_gateway.idempotency")

_SF_ESCAPE = re.compile(r'\\(["\\\\])')
#: Longest ``Retry-After`` a request in progress is answered with.
_MAX_RETRY_AFTER = 5.0


def record_key(client_id: str | None, key: str) -> str:
    """The key as the gateway and the ERP store it: the caller's own, scoped to its client (as
    Stripe scopes keys per account: two clients never see each other's writes), and read as the
    IETF draft's structured-field string (``"abc"`` and ``abc`` are one key)."""
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = _SF_ESCAPE.sub(r"\1", key[1:-1])
    return f"{client_id or 'anonymous'}/{key}"


class IdempotencySettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: SQLite file of the host-local record (all workers of one host; Redis's fallback).
    path: str = "var/idempotency.sqlite"
    #: Seconds a completed write's answer is kept and replayed.
    ttl_seconds: int = 86_400
    #: Seconds a claim holds its key; must outlast the ERP write timeout (a dead worker's
    #: claim is given up after this long).
    lease_seconds: int = 60


class StoredAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What a completed write answered: replayed as it was."""

    status: int
    body: bytes
    location: str | None = None


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """What the store found for a key when asked to claim it."""

    state: Literal["claimed", "in_progress", "completed"]
    fingerprint: str
    #: ``in_progress``: seconds until the other attempt's lease runs out.
    retry_after: float = 0.0
    answer: StoredAnswer | None = None


class IdempotencyStore(abc.ABC):
    """Records per key. Every method is one atomic step on the key (one Redis slot)."""

    @abc.abstractmethod
    async def claim(self, key: str, fingerprint: str, owner: str, lease_seconds: int) -> Claim:
        """Claim ``key`` for ``owner`` unless a live record holds it (then: what it holds).

        Asking again with the same owner (a retried command) claims again, never conflicts."""

    @abc.abstractmethod
    async def complete(self, key: str, owner: str, answer: StoredAnswer, ttl_seconds: int) -> None:
        """Store the answer, if ``owner`` still holds the claim."""

    @abc.abstractmethod
    async def release(self, key: str, owner: str) -> None:
        """Drop the claim, if ``owner`` still holds it."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once at shutdown."""


class StoreUnavailable(ErpUnavailable):
    """The record cannot be written (the store is unreachable, its file unusable): the write is
    refused with a 503 before the ERP is called, never performed unrecorded."""

    code = "idempotency-unavailable"


class RequestInProgress(InProgress):
    """Another request with the same key is being performed: try again after ``retry_after``."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            "a request with this Idempotency-Key is in progress; retry after it finished", retry_after=retry_after
        )


def key_reused() -> Rejected:
    return Rejected(
        "idempotency-key-reused",
        "Idempotency-Key was already used for a different request",
        field="Idempotency-Key",
    )


class IdempotentWrites:
    """Runs a write at most once at a time per key and replays its stored answer."""

    def __init__(self, store: IdempotencyStore, settings: IdempotencySettings) -> None:
        self._store = store
        self._settings = settings
        self._tasks: set[asyncio.Task[tuple[StoredAnswer, bool]]] = set()

    async def run(
        self, scope: str, key: str, fingerprint: str, perform: Callable[[], Awaitable[StoredAnswer]]
    ) -> tuple[StoredAnswer, bool]:
        """(answer, replayed). ``scope`` keeps the keys of different operations apart.

        The attempt (claim, write, record) goes on even if the caller hangs up: a claim left
        without its write, or a half-done write, is what a retry would otherwise meet."""
        task = asyncio.get_running_loop().create_task(self._attempt(f"{scope}:{key}", fingerprint, perform))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_settled)
        return await asyncio.shield(task)

    async def _attempt(
        self, record_key: str, fingerprint: str, perform: Callable[[], Awaitable[StoredAnswer]]
    ) -> tuple[StoredAnswer, bool]:
        owner = uuid.uuid4().hex
        claim = await self._store.claim(record_key, fingerprint, owner, self._settings.lease_seconds)
        if claim.fingerprint != fingerprint:  # held by a request with another body
            raise key_reused()
        if claim.state == "completed" and claim.answer is not None:
            return claim.answer, True
        if claim.state == "in_progress":  # the lease is the worst case; the write is usually done sooner
            raise RequestInProgress(min(max(1.0, claim.retry_after), _MAX_RETRY_AFTER))
        try:
            answer = await perform()
        except BaseException:
            await self._settle(self._store.release(record_key, owner))
            raise
        await self._settle(self._store.complete(record_key, owner, answer, self._settings.ttl_seconds))
        return answer, False

    @staticmethod
    async def _settle(step: Awaitable[None]) -> None:
        """Record an outcome; if the store fails now, the claim lapses with its lease and a
        retry then meets the ERP-side lookup, so the write's own answer still stands."""
        try:
            await step
        except StoreUnavailable as exc:
            log.warning("idempotency record not settled, it lapses with its lease: %s", exc)

    async def aclose(self) -> None:
        if self._tasks:  # writes under way finish (bounded by the ERP write timeout)
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._store.aclose()


def _settled(task: asyncio.Task[tuple[StoredAnswer, bool]]) -> None:
    """An attempt whose caller hung up still ends: its failure is logged here, not lost."""
    if not task.cancelled() and (failure := task.exception()) is not None:
        log.info("an idempotent write ended in %s after its caller left", type(failure).__name__)
