"""A port call as a value: the operation, its arguments and its ``CallContext``, sendable to any backend.

``WrappingBackend`` turns every port method into an ``Invocation`` and hands it to one ``handle``
method; a decorator may change its context, send it on, send it elsewhere (a routing or a
shadowing backend: the shape of httpx's ``AsyncMounts``) or not send it at all.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

from erp_backends.operations import Operation, OperationSpec, spec_of
from erp_backends.port import CallContext, ErpBackend

__all__ = ["Invocation"]

T = TypeVar("T")


class Invocation(Generic[T]):
    """``operation(*args, ctx)`` on whichever backend it is sent to; ``T`` is what it returns."""

    __slots__ = ("args", "ctx", "operation")

    def __init__(self, operation: Operation, args: tuple[Any, ...], ctx: CallContext) -> None:
        self.operation = operation
        self.args = args
        self.ctx = ctx

    @property
    def spec(self) -> OperationSpec:
        """What the operation is (``erp_backends.operations``)."""
        return spec_of(self.operation)

    def with_context(self, ctx: CallContext) -> Invocation[T]:
        """The same call with another context (e.g. a ``traceparent`` naming the call's span)."""
        return Invocation(self.operation, self.args, ctx)

    async def send(self, backend: ErpBackend) -> T:
        method = getattr(backend, self.operation)
        return cast(T, await method(*self.args, self.ctx))

    def __repr__(self) -> str:
        return f"Invocation({self.operation!r}, correlation_id={self.ctx.correlation_id!r})"
