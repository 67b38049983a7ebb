"""The app factory: builds the Litestar app from settings, in small named steps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.openapi.plugins import JsonRenderPlugin, ScalarRenderPlugin
from litestar.openapi.spec import Contact, License, Server, Tag

from erp_backends.port import ErpBackend
from gateway.auth import Authentication, AuthSettings, security_components
from gateway.auth.settings import split_words
from gateway.bootstrap import Runtime, WrapAdapter
from gateway.decoding import StrictRequest, check_request_shape, register_request_shapes
from gateway.hardening import HeaderLimitMiddleware, cors_config
from gateway.hot_path import HotPath
from gateway.observability.endpoint import metrics_endpoint
from gateway.observability.middleware import RequestTelemetry
from gateway.observability.telemetry import Telemetry
from gateway.openapi_wire import WireOpenAPIConfig
from gateway.problems import check_problem_codes, exception_handlers
from gateway.quota_middleware import QuotaMiddleware
from gateway.response_headers import finish_response
from gateway.routes import (
    V1_CONTROLLERS,
    AdminController,
    HealthController,
    IntakeAdminController,
    ShadowAdminController,
)
from gateway.routes._openapi import ContractSchemaPlugin
from gateway.settings import Settings, load_settings

__all__ = ["API_VERSION", "create_app", "openapi_config"]

#: Version of the published contract (openapi/v1.json); independent of the package version.
API_VERSION = "1.0.0"


def openapi_config(token_url: str = AuthSettings().token_url) -> WireOpenAPIConfig:
    return WireOpenAPIConfig(
        title="erp-gateway",
        version=API_VERSION,
        summary="Stable contract endpoints for storefronts, helpdesks and partners, in front of any ERP.",
        description=(
            "Availability, customer prices, order validation and lookup, and return authorizations. "
            "Every error is an RFC 9457 `application/problem+json` document whose `type` is stable; "
            "every response echoes `X-Request-ID`."
        ),
        contact=Contact(name="erp-gateway platform team", url="https://erp-gateway.dev"),
        license=License(name="MIT", url="https://spdx.org/licenses/MIT.html"),
        servers=[
            Server(url="http://127.0.0.1:8080", description="A local gateway (`make run`)"),
            Server(url="/", description="The host that serves this document"),
        ],
        tags=[
            Tag(name="availability", description="Stock per SKU and warehouse"),
            Tag(name="prices", description="Customer-specific prices"),
            Tag(name="orders", description="Order validation and lookup"),
            Tag(name="returns", description="Return authorizations (RMA)"),
            Tag(name="admin", description="Cache administration for ERP-side change events"),
            Tag(name="operations", description="Health and readiness"),
        ],
        path="/docs",
        render_plugins=[ScalarRenderPlugin(path="/"), JsonRenderPlugin(path="/openapi.json")],
        create_examples=False,
        components=security_components(token_url),
    )


def create_app(
    settings: Settings | None = None,
    backend: ErpBackend | None = None,
    telemetry: Telemetry | None = None,
    wrap_adapter: WrapAdapter | None = None,
) -> Litestar:
    """Build the app. ``backend`` replaces the default backend's adapter (tests use this);
    the policies still wrap it. ``telemetry`` replaces the one the settings describe (tests:
    an in-memory span exporter). ``wrap_adapter`` wraps each bare adapter inside the policies
    (tests: fault injection)."""
    settings = settings or load_settings()
    check_problem_codes()  # a slug without a catalog entry fails here, not in a caller's answer
    auth = Authentication(settings.auth)
    telemetry = telemetry or Telemetry(settings.observability)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Built here, in the worker, after gunicorn forked: clients are never shared across processes.
        app.state.runtime = Runtime(settings, adapter=backend, telemetry=telemetry, wrap_adapter=wrap_adapter)
        app.state.runtime.start()
        telemetry.watch_breakers(app.state.runtime.erp.breakers())
        telemetry.start_flushing()
        try:
            yield
        finally:
            try:
                await app.state.runtime.aclose()
            finally:
                telemetry.shutdown()  # the last second of request metrics, whatever closing did

    app = Litestar(
        route_handlers=[
            *V1_CONTROLLERS,
            AdminController,
            IntakeAdminController,
            ShadowAdminController,
            HealthController,
            metrics_endpoint,
        ],
        exception_handlers=exception_handlers,
        # Bodies and parameters are read strictly, once for every route (gateway.decoding).
        request_class=StrictRequest,
        before_request=check_request_shape,
        before_send=[finish_response],
        # Outermost first: header limit, then authentication (sets the identity quotas count by).
        middleware=[HeaderLimitMiddleware(settings.http.max_header_bytes), auth.middleware, QuotaMiddleware],
        cors_config=cors_config(split_words(settings.http.cors_allow_origins)),
        lifespan=[auth.lifespan, lifespan],
        openapi_config=openapi_config(settings.auth.token_url) if settings.http.docs_enabled else None,
        request_max_body_size=settings.http.max_body_bytes,
        plugins=[ContractSchemaPlugin()],
        logging_config=None,
        debug=False,
    )
    register_request_shapes(app)
    app.state.telemetry = telemetry
    app.state.metrics_token = settings.observability.scrape_token()
    handler = app.asgi_handler
    if settings.http.hot_path:  # in front of the router, behind the before_send pass
        handler = HotPath(handler, app, auth, settings.http.max_header_bytes)
    # Outside routing and exception handling: sees every answer, 404s and refusals included.
    app.asgi_handler = RequestTelemetry(handler, telemetry)
    return app
