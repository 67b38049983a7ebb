"""Coalescing: concurrent misses for one key in this process share ONE fetch.

Across processes there is no lock (see the README): each worker that misses at the same
moment makes its own call, at most one per key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from erp_backends.port import CallNotes
from policies.caching.store import BackgroundTasks

__all__ = ["Fetch", "SingleFlight"]

log = logging.getLogger("erp_gateway.cache")

#: Fetches missing keys from the ERP, stores them, and returns what it found.
Fetch = Callable[[list[str]], Coroutine[Any, Any, dict[str, Any]]]


class SingleFlight:
    """The fetches in flight in this process, by key."""

    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Task[dict[str, Any]]] = {}

    def _join(self, keys: Sequence[str], fetch: Fetch, notes: CallNotes) -> list[asyncio.Task[dict[str, Any]]]:
        """The fetches that will bring ``keys``: the ones in flight in this process, and ONE new
        fetch for the rest, registered before this returns (so a request in the same event-loop
        turn joins it instead of starting its own)."""
        tasks: dict[asyncio.Task[dict[str, Any]], None] = {}
        mine = [k for k in keys if k not in self._inflight]
        if len(mine) < len(keys):
            notes.collapsed = True
        for key in keys:
            if key in self._inflight:
                tasks[self._inflight[key]] = None
        if mine:
            task = asyncio.create_task(fetch(mine))
            for key in mine:
                self._inflight[key] = task

            def done(t: asyncio.Task[dict[str, Any]], owned: list[str] = mine) -> None:
                for key in owned:
                    if self._inflight.get(key) is t:
                        del self._inflight[key]
                if not t.cancelled():
                    t.exception()  # retrieved here so an unobserved failure is not reported twice

            task.add_done_callback(done)
            tasks[task] = None
        return list(tasks)

    async def fetch(self, keys: Sequence[str], fetch: Fetch, notes: CallNotes) -> dict[str, Any]:
        """Values for ``keys`` from ONE fetch per key in this process, however many ask at once."""
        out: dict[str, Any] = {}
        for task in self._join(keys, fetch, notes):
            out.update(await asyncio.shield(task))
        return {k: out[k] for k in keys if k in out}

    def refresh(self, keys: Sequence[str], fetch: Fetch, background: BackgroundTasks) -> None:
        """Refresh stale keys in the background (once per key per process)."""
        todo = [k for k in keys if k not in self._inflight]
        if not todo:
            return
        tasks = self._join(todo, fetch, CallNotes())  # nobody answers from a background refresh

        async def run() -> None:
            for task in tasks:
                try:
                    # shielded: cancelling this watcher (shutdown) must not cancel a fetch that
                    # requests may have joined
                    await asyncio.shield(task)
                except Exception as exc:  # the stale value keeps being served
                    log.info("background revalidation failed: %s", exc)

        background.spawn(run())
