"""The app factory: builds the Litestar app from settings, in small named steps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, ScalarRenderPlugin
from litestar.openapi.spec import Tag

from erp_backends.port import CallContext, ErpBackend
from gateway.bootstrap import build_backend
from gateway.correlation import correlation_id, echo_request_id, traceparent
from gateway.problems import exception_handlers
from gateway.routes import V1_CONTROLLERS, HealthController
from gateway.settings import Settings, load_settings

__all__ = ["API_VERSION", "create_app", "openapi_config"]

#: Version of the published contract (openapi/v1.json); independent of the package version.
API_VERSION = "1.0.0"


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="erp-gateway",
        version=API_VERSION,
        summary="Stable contract endpoints for storefronts, helpdesks and partners, in front of any ERP.",
        description=(
            "Availability, customer prices, order validation and lookup, and return authorizations. "
            "Every error is an RFC 9457 `application/problem+json` document whose `type` is stable; "
            "every response echoes `X-Request-ID`."
        ),
        tags=[
            Tag(name="availability", description="Stock per SKU and warehouse"),
            Tag(name="prices", description="Customer-specific prices"),
            Tag(name="orders", description="Order validation and lookup"),
            Tag(name="returns", description="Return authorizations (RMA)"),
            Tag(name="operations", description="Health and readiness"),
        ],
        path="/docs",
        render_plugins=[ScalarRenderPlugin(path="/"), JsonRenderPlugin(path="/openapi.json")],
        create_examples=False,
    )


def _erp(request: Request[Any, Any, Any]) -> ErpBackend:
    backend: ErpBackend = request.app.state.erp
    return backend


def _call_context(request: Request[Any, Any, Any]) -> CallContext:
    return CallContext(correlation_id=correlation_id(request.scope), traceparent=traceparent(request.scope))


def create_app(settings: Settings | None = None, backend: ErpBackend | None = None) -> Litestar:
    """Build the app. ``backend`` overrides the one the settings name (tests use this)."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.erp = backend or build_backend(settings)
        try:
            yield
        finally:
            await app.state.erp.aclose()

    return Litestar(
        route_handlers=[*V1_CONTROLLERS, HealthController],
        dependencies={
            "erp": Provide(_erp, sync_to_thread=False),
            "ctx": Provide(_call_context, sync_to_thread=False),
        },
        exception_handlers=exception_handlers,
        before_send=[echo_request_id],
        lifespan=[lifespan],
        openapi_config=openapi_config() if settings.http.docs_enabled else None,
        request_max_body_size=settings.http.max_body_bytes,
        logging_config=None,
        debug=False,
    )
