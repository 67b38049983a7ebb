"""What routes receive from the composition root (see ``gateway.app``)."""

from __future__ import annotations

from litestar.di import NamedDependency

from erp_backends.port import CallContext, ErpBackend
from gateway.bootstrap import Runtime

__all__ = ["Ctx", "Erp", "RuntimeDep"]

#: The ERP backend, wrapped in whatever policies the settings enable.
Erp = NamedDependency[ErpBackend]
#: Correlation ID and trace context of the request, for the backend call.
Ctx = NamedDependency[CallContext]
#: The worker's wired object graph, for operations routes (readiness, cache administration).
RuntimeDep = NamedDependency[Runtime]
