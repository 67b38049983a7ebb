"""Posting accepted orders to the ERP: claim the earliest due intake, create its ERP order
through the backend's policy chain (breaker, call budget, write timeout), record the outcome.

At least once: an intake is acknowledged (``posted``) only after the ERP confirmed it; a worker
that dies mid-post leaves it to be claimed again when its lease runs out. Exactly once in the
ERP: the order carries the intake's idempotency key, which the ERP adapter looks up before it
creates anything, so a second attempt finds the first one's order.

Outcomes: created or found -> ``posted``; a business rejection (``Rejected``) -> ``rejected``
at once, with the ERP's reason, its hold released; the ERP unavailable or slow -> tried again
after a jittered exponential delay, ``dead_lettered`` after ``max_attempts``. While the
backend's write breaker is open nothing is claimed: an outage spends no attempts, and the
backlog drains at the ERP's pace (``posting_concurrency`` per process, under the call budget).
A post the gateway's own guards refuse before the ERP is asked (``CircuitOpen``: the breaker's
trial call is under way; ``CallBudgetExhausted``) is due again when they allow calls, with no
backoff, with its attempt given back (``retry(spent=False)``: only calls the ERP failed count
toward ``max_attempts``), and the process claims nothing until then: the breaker reads as not
refusing while its trial call is out, and without that hold the loop would claim every due
order in that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable

import msgspec

from contracts.v1 import OrderIntakeRequest
from erp_backends.errors import ErpError, ErpTimeout, ErpUnavailable, InProgress, Rejected
from erp_backends.port import CallContext, ErpBackend, IdempotencyToken
from gateway.intake.settings import IntakeSettings
from gateway.intake.store import Claimed, IntakeRecord, IntakeStore, IntakeStoreUnavailable, Stale
from policies.call_budget import CallBudgetExhausted
from policies.circuit_breaking import CircuitOpen

__all__ = ["Poster"]

log = logging.getLogger("erp_gateway.intake")

_REQUEST = msgspec.json.Decoder(OrderIntakeRequest)


class Poster:
    """``run()`` until ``stop()``; ``post_due()`` posts what is due once (tests, ``worker --once``)."""

    def __init__(
        self,
        store: IntakeStore,
        backend: ErpBackend,
        settings: IntakeSettings,
        *,
        paused: Callable[[], bool] = lambda: False,
        changed: Callable[[str], None] = lambda sku: None,
        observe: Callable[[str], None] = lambda outcome: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._backend = backend
        self._settings = settings
        self._paused = paused  # the write breaker is open: claim nothing
        self._changed = changed  # the holds on this SKU changed (``HeldStock.forget``)
        self._observe = observe  # one attempt's outcome (metrics)
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.posting_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._held_until = 0.0  # the guards refused a post: claim nothing before this (epoch seconds)
        self.posted = 0

    async def run(self) -> None:
        """Claim and post until ``stop()``; every post in flight then finishes (bounded by the
        ERP write timeout)."""
        store_down = False
        while not self._stopping.is_set():
            try:
                started = await self._claim_some()
                if store_down:
                    store_down = False
                    log.warning("intake store is back, posting resumes")
            except IntakeStoreUnavailable as exc:
                if not store_down:  # once per outage, not once per idle turn
                    store_down = True
                    log.warning("intake store unavailable, posting paused: %s", exc)
                started = 0
            except Exception:  # a bug must not stop posting for good
                log.exception("posting loop failed; going on")
                started = 0
            if not started:
                await self._idle()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def stop(self) -> None:
        self._stopping.set()

    async def post_due(self) -> int:
        """Post every intake due now, one after another; how many attempts were made."""
        attempts = 0
        while (
            self._clock() >= self._held_until
            and (claimed := await self._store.claim(self._clock(), self._settings.lease_seconds, _token())) is not None
        ):
            await self._post(claimed)
            attempts += 1
        return attempts

    async def _claim_some(self) -> int:
        started = 0
        while not self._stopping.is_set() and not self._paused() and self._clock() >= self._held_until:
            await self._slots.acquire()
            if self._stopping.is_set():  # stopped while waiting for a slot: claim nothing more
                self._slots.release()
                break
            try:
                claimed = await self._store.claim(self._clock(), self._settings.lease_seconds, _token())
            except BaseException:
                self._slots.release()
                raise
            if claimed is None:
                self._slots.release()
                break
            task = asyncio.get_running_loop().create_task(self._post_in_slot(claimed))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started += 1
        return started

    async def _idle(self) -> None:
        """Sleep ``idle_seconds``, or until the next retry is due, or until ``stop()``."""
        wait = self._settings.idle_seconds
        if self._paused():  # the breaker refuses calls: the due backlog waits, the store is not asked
            due = None
        else:
            try:
                due = await self._store.next_due()
            except IntakeStoreUnavailable:
                due = None
        if due is not None:
            wait = min(wait, max(0.0, due - self._clock()))
        wait = max(wait, self._held_until - self._clock())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=max(wait, 0.01))

    async def _post_in_slot(self, claimed: Claimed) -> None:
        try:
            await self._post(claimed)
        except Exception:
            log.exception(
                "posting intake %s failed; its lease will run out and it is tried again", claimed.record.intake_id
            )
        finally:
            self._slots.release()

    async def _post(self, claimed: Claimed) -> None:
        record = claimed.record
        attempt = record.attempts
        token = IdempotencyToken(key=record.key, fingerprint=record.fingerprint)
        ctx = CallContext(correlation_id=f"intake-{record.intake_id}-{attempt}")
        try:
            request = _REQUEST.decode(record.request)
        except msgspec.DecodeError as exc:  # e.g. written by a newer version: no retry will read it
            detail = f"the stored order cannot be read by this version: {exc}"
            log.error("intake %s dead-lettered: %s", record.intake_id, detail)
            await self._settle(self._store.give_up(record.intake_id, attempt, "dead_lettered", detail, self._clock()))
            self._observe("dead_lettered")
            return
        try:
            outcome = await self._backend.create_order(request, token, ctx)
        except InProgress as exc:  # another attempt is creating it now: ask again when it says, unspent
            now = self._clock()
            due = now + max(1.0, exc.retry_after)
            await self._settle(self._store.retry(record.intake_id, attempt, exc.detail, due, now, spent=False))
        except (CircuitOpen, CallBudgetExhausted) as exc:  # the ERP was not asked: not a failure of it
            now = self._clock()
            self._held_until = max(self._held_until, now + (exc.retry_after or 1.0))
            error = f"{type(exc).__name__}: {exc.detail}"
            await self._settle(self._store.retry(record.intake_id, attempt, error, self._held_until, now, spent=False))
        except Rejected as exc:
            detail = f"{exc.code}: {exc.detail}" + (f" ({exc.field})" if exc.field else "")
            log.warning("intake %s rejected by the ERP: %s", record.intake_id, detail)
            await self._settle(self._store.give_up(record.intake_id, attempt, "rejected", detail, self._clock()))
            self._observe("rejected")
        except (ErpUnavailable, ErpTimeout, ErpError) as exc:
            await self._failed(record.intake_id, attempt, f"{type(exc).__name__}: {exc.detail}", record.round_attempts)
        except Exception as exc:  # our bug or the adapter's: never lose the order, never loop hot
            log.exception("posting intake %s raised", record.intake_id)
            await self._failed(record.intake_id, attempt, f"{type(exc).__name__}", record.round_attempts)
        else:
            await self._settle(self._store.posted(record.intake_id, attempt, outcome.order_number, self._clock()))
            self.posted += 1
            self._observe("posted")
            log.info(
                "intake %s posted as %s%s",
                record.intake_id,
                outcome.order_number,
                " (found by its key)" if outcome.replayed else "",
            )

    async def _failed(self, intake_id: str, attempt: int, error: str, made: int) -> None:
        """``attempt``: the claim's number (the store's steps name it); ``made``: attempts in
        this round (since the intake was accepted or replayed), what the limit counts."""
        now = self._clock()
        if made >= self._settings.max_attempts:
            log.warning("intake %s dead-lettered after %d attempts: %s", intake_id, made, error)
            await self._settle(
                self._store.give_up(intake_id, attempt, "dead_lettered", f"after {made} attempts: {error}", now)
            )
            self._observe("dead_lettered")
            return
        await self._settle(self._store.retry(intake_id, attempt, error, now + self.backoff(made), now))
        self._observe("retried")

    def backoff(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1``: between half and all of an exponential ceiling
        (jitter spreads the retries of a backlog that failed at once)."""
        ceiling = min(self._settings.max_backoff_seconds, self._settings.backoff_seconds * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret

    async def _settle(self, step: Awaitable[IntakeRecord]) -> None:
        """Record an outcome; a claim taken over meanwhile (``Stale``) is the newer attempt's to
        settle, and a store that fails now leaves the lease to run out (posted again: found by key)."""
        try:
            record = await step
            for hold in record.holds:
                self._changed(hold.sku)
        except Stale as exc:
            log.info("intake outcome not recorded, the intake moved on: %s", exc)
        except IntakeStoreUnavailable as exc:
            log.warning("intake outcome not recorded (store unavailable); it is posted again: %s", exc)


def _token() -> str:
    return uuid.uuid4().hex
