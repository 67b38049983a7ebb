"""Fault injection for tests and demos: any backend slow, failing or down on command, its calls counted.

Not part of the gateway: the composition root's ``wrap_adapter`` hook installs it around the
bare adapter (``create_app(wrap_adapter=...)``; for the real ``erp-gateway serve`` process,
``python -m tests.harness.serve`` does, reading ``from_environment``). The control file holds
JSON such as ``{"mode": "down"}``, ``{"mode": "slow", "delay_ms": 800}`` or ``{"mode": "ok"}``,
so a test can flip every worker process at once. With a calls log, each call that reaches the
wrapped backend appends one line ``<pid> <operation>`` (the port method's name, e.g.
``get_availability``): tests count ERP calls across workers with it.

Modes: ``ok``; ``slow`` (reaches the ERP after ``delay_ms``); ``failing`` (reaches it, counted,
after ``delay_ms``, then fails); ``down`` (refused before it reaches the ERP, not counted).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, TypeVar

import msgspec

from erp_backends.errors import ErpUnavailable
from erp_backends.invocation import Invocation
from erp_backends.port import ErpBackend
from erp_backends.wrapping import WrappingBackend

__all__ = [
    "BACKEND_ENV",
    "CALLS_LOG_ENV",
    "CONTROL_FILE_ENV",
    "Fault",
    "FaultInjectingBackend",
    "FileControl",
    "from_environment",
]

T = TypeVar("T")

#: The variables the e2e tests (and bench) set; read by ``from_environment`` only, never by the gateway.
CONTROL_FILE_ENV = "ERPGW_FAULTS__CONTROL_FILE"
CALLS_LOG_ENV = "ERPGW_FAULTS__CALLS_LOG"
#: Only the backend of this name is wrapped (several backends: one slow shadow); unset: every one.
BACKEND_ENV = "ERPGW_FAULTS__BACKEND"


class Fault(msgspec.Struct, kw_only=True):
    mode: Literal["ok", "down", "slow", "failing"] = "ok"
    delay_ms: float = 0.0


class FileControl:
    """The fault a JSON file says, read again whenever the file changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._seen: tuple[float, Fault] = (-1.0, Fault())

    def __call__(self) -> Fault:
        try:
            mtime = self._path.stat().st_mtime
        except OSError:
            return Fault()
        if mtime != self._seen[0]:
            try:
                self._seen = (mtime, msgspec.json.decode(self._path.read_bytes(), type=Fault))
            except (OSError, msgspec.DecodeError):
                return self._seen[1]
        return self._seen[1]


class FaultInjectingBackend(WrappingBackend):
    """``control`` says the fault of the moment; ``record`` hears each call that reaches the ERP."""

    def __init__(
        self, inner: ErpBackend, control: Callable[[], Fault], record: Callable[[str], None] | None = None
    ) -> None:
        super().__init__(inner)
        self.control = control
        self.record = record

    async def handle(self, invocation: Invocation[T]) -> T:
        fault = self.control()
        if fault.mode == "down":
            raise ErpUnavailable(f"injected fault: the ERP is down ({invocation.operation})")
        if self.record is not None:
            self.record(invocation.operation)
        if fault.mode in ("slow", "failing") and fault.delay_ms:
            await asyncio.sleep(fault.delay_ms / 1000)
        if fault.mode == "failing":
            raise ErpUnavailable(f"injected fault: the ERP fails ({invocation.operation})")
        return await invocation.send(self.inner)

    async def check_ready(self) -> None:
        if self.control().mode in ("down", "failing"):
            raise ErpUnavailable("injected fault: the ERP is down")
        await self.inner.check_ready()


def _log_to(path: Path) -> Callable[[str], None]:
    def record(operation: str) -> None:
        with path.open("a") as log:
            log.write(f"{os.getpid()} {operation}\n")

    return record


def from_environment(environ: Mapping[str, str] | None = None) -> Callable[[ErpBackend], ErpBackend] | None:
    """The ``wrap_adapter`` hook the variables above describe; None when no control file is named."""
    environ = os.environ if environ is None else environ
    control = environ.get(CONTROL_FILE_ENV, "")
    if not control:
        return None
    calls_log = environ.get(CALLS_LOG_ENV, "")
    record = _log_to(Path(calls_log)) if calls_log else None
    only = environ.get(BACKEND_ENV, "")

    def wrap(adapter: ErpBackend) -> ErpBackend:
        if only and adapter.name != only:
            return adapter
        return FaultInjectingBackend(adapter, FileControl(Path(control)), record)

    return wrap
