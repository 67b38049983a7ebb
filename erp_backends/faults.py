"""A fault-injecting decorator for any backend: slow, failing or down on command.

For resilience tests and demos only; active when ``ERPGW_FAULTS__CONTROL_FILE`` is set. The
control file holds JSON such as ``{"mode": "down"}``, ``{"mode": "slow", "delay_ms": 800}``
or ``{"mode": "ok"}``, so a test can flip every worker process at once. With ``calls_log``
set, each call that reaches the wrapped backend appends one line ``<pid> <operation>``
(the port method's name, e.g. ``get_availability``):
tests count ERP calls across workers with it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from erp_backends.errors import ErpUnavailable
from erp_backends.port import CallContext, ErpBackend
from erp_backends.wrapping import Operation, WrappingBackend

__all__ = ["FaultInjectingBackend", "FaultSettings"]

T = TypeVar("T")


class FaultSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: JSON file that switches faults on and off; empty disables fault injection entirely.
    control_file: str = ""
    #: File that gets one line per call reaching the ERP; empty records nothing.
    calls_log: str = ""


class _Control(msgspec.Struct, kw_only=True):
    mode: Literal["ok", "down", "slow"] = "ok"
    delay_ms: float = 0.0


class FaultInjectingBackend(WrappingBackend):
    def __init__(self, inner: ErpBackend, settings: FaultSettings) -> None:
        super().__init__(inner)
        self._control = Path(settings.control_file)
        self._log = Path(settings.calls_log) if settings.calls_log else None
        self._seen: tuple[float, _Control] = (-1.0, _Control())

    def _current(self) -> _Control:
        try:
            mtime = self._control.stat().st_mtime
        except OSError:
            return _Control()
        if mtime != self._seen[0]:
            try:
                self._seen = (mtime, msgspec.json.decode(self._control.read_bytes(), type=_Control))
            except (OSError, msgspec.DecodeError):
                return self._seen[1]
        return self._seen[1]

    async def around(
        self, operation: Operation, ctx: CallContext, call: Callable[[CallContext], Coroutine[Any, Any, T]]
    ) -> T:
        control = self._current()
        if control.mode == "down":
            raise ErpUnavailable(f"injected fault: the ERP is down ({operation})")
        if self._log is not None:
            with self._log.open("a") as log:
                log.write(f"{os.getpid()} {operation}\n")
        if control.mode == "slow":
            await asyncio.sleep(control.delay_ms / 1000)
        return await call(ctx)

    async def check_ready(self) -> None:
        if self._current().mode == "down":
            raise ErpUnavailable("injected fault: the ERP is down")
        await self.inner.check_ready()
