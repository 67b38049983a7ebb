"""What routes take from the composition root (see ``gateway.app``): the backend and the call context.

Routes ask for the ``request`` and call ``erp_call(request)`` instead of declaring Litestar
dependencies: resolving two dependencies cost ~25 µs per request (measured in-process,
Litestar 2.25), more than the whole cached lookup, and this is the checkout's hot path.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from erp_backends.port import CallContext, ErpBackend
from gateway.bootstrap import Runtime
from gateway.cache_status import notes_for
from gateway.correlation import correlation_id, traceparent
from gateway.identity import client_identity

__all__ = ["AnyRequest", "call_context", "erp_call", "runtime_of"]

AnyRequest = Request[Any, Any, Any]


def runtime_of(request: AnyRequest) -> Runtime:
    """The worker's wired object graph (built at start-up by the app's lifespan)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def call_context(request: AnyRequest) -> CallContext:
    """Who asks, how to correlate, and where the cache reports (``Cache-Status``): passed with
    every backend call and write."""
    scope = request.scope
    identity = client_identity(scope)
    return CallContext(
        correlation_id=correlation_id(scope),
        client_id=identity.client_id if identity else None,
        channel=identity.channel if identity else None,
        traceparent=traceparent(scope),
        notes=notes_for(scope),
    )


def erp_call(request: AnyRequest) -> tuple[ErpBackend, CallContext]:
    """The ERP backend (each call routed to a backend in its policies) and the context to pass with each call."""
    return runtime_of(request).erp.routed, call_context(request)
