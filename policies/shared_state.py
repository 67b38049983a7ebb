"""The state policies share across workers and instances: the narrow port they need, no client.

``SharedState`` is the strict port, for a durable store (idempotency records): every failure
raises ``SharedStateUnavailable``. ``LenientState`` wraps one for the policies whose shared state
only makes them better (cache, quotas, breakers): a failure is a miss or a fallback, and the
store says it is down (readiness) until it answers again. Keys are logical; the store adds its
own prefix. The Redis implementation and its connection factory are ``gateway.shared_state``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

__all__ = ["LenientState", "SharedState", "SharedStateUnavailable", "Write"]

#: One key to write: (key, value, milliseconds to live; None: no expiry).
Write = tuple[str, bytes, int | None]


class SharedStateUnavailable(Exception):
    """The shared store could not be asked (down, slow, or in its back-off after a failure)."""


class SharedState(abc.ABC):
    """A key-value store shared by every worker and instance; every failure raises
    ``SharedStateUnavailable``. Multi-key calls are not atomic: each key stands alone."""

    #: What the last failure was, for readiness and logs (None: none since it last answered).
    last_error: str | None = None

    @property
    def available(self) -> bool:
        """False while the store is known to be down (a call would fail at once)."""
        return True

    @abc.abstractmethod
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The value of each key, in order (None: absent), in one round trip where the store can."""

    @abc.abstractmethod
    async def set_many(self, writes: Sequence[Write]) -> None:
        """Write each key."""

    @abc.abstractmethod
    async def swap_many(self, writes: Sequence[Write]) -> list[bytes | None]:
        """Write each key and answer what it held before (None: absent)."""

    @abc.abstractmethod
    async def delete(self, keys: Sequence[str]) -> int:
        """Remove these keys (never a pattern); answers how many existed."""

    @abc.abstractmethod
    def register_script(self, name: str, source: str) -> None:
        """Make a Lua script runnable by ``name`` (atomic on one key; see ``run_script``)."""

    @abc.abstractmethod
    async def run_script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a registered script on ``keys`` (one key: legal on any deployment) with ``args``."""

    @abc.abstractmethod
    async def run_script_many(self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Run a registered script once per ``(keys, args)`` (one key each), in one round trip
        per server; the answers in order. Each run is atomic on its key, the batch is not."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Ask the store now, even inside a back-off window; raise when it does not answer."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a fake holds nothing
        """Close connections; called once at shutdown."""


class LenientState:
    """A ``SharedState`` whose failures are misses: every call answers its fallback (None, or
    what it says) when the store is absent, down or failing. ``None``: no shared store at all."""

    def __init__(self, store: SharedState | None) -> None:
        self.strict = store

    @property
    def configured(self) -> bool:
        return self.strict is not None

    @property
    def available(self) -> bool:
        """Configured and not known to be down."""
        return self.strict is not None and self.strict.available

    @property
    def last_error(self) -> str | None:
        return None if self.strict is None else self.strict.last_error

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None] | None:
        """The values, or None when the store cannot be asked."""
        if self.strict is None or not self.strict.available:
            return None
        try:
            return await self.strict.get_many(keys)
        except SharedStateUnavailable:
            return None

    async def set_many(self, writes: Sequence[Write]) -> None:
        if self.strict is None or not self.strict.available or not writes:
            return
        try:
            await self.strict.set_many(writes)
        except SharedStateUnavailable:
            return

    async def swap_many(self, writes: Sequence[Write]) -> list[bytes | None] | None:
        """What each key held before, or None when the store cannot be asked."""
        if self.strict is None or not self.strict.available:
            return None
        try:
            return await self.strict.swap_many(writes)
        except SharedStateUnavailable:
            return None

    def register_script(self, name: str, source: str) -> None:
        if self.strict is not None:
            self.strict.register_script(name, source)

    async def run_script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any | None:
        """The script's answer, or None when the store cannot be asked."""
        if self.strict is None or not self.strict.available:
            return None
        try:
            return await self.strict.run_script(name, keys, args)
        except SharedStateUnavailable:
            return None

    async def run_script_many(
        self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
    ) -> list[Any] | None:
        """The scripts' answers, or None when the store cannot be asked."""
        if self.strict is None or not self.strict.available:
            return None
        if not calls:
            return []
        try:
            return await self.strict.run_script_many(name, calls)
        except SharedStateUnavailable:
            return None

    async def ping(self) -> bool:
        """Readiness probe that bypasses the back-off window."""
        if self.strict is None:
            return False
        try:
            await self.strict.ping()
        except SharedStateUnavailable:
            return False
        return True

    async def aclose(self) -> None:
        if self.strict is not None:
            await self.strict.aclose()
