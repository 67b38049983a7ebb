"""``GET /metrics``: the Prometheus text exposition, out of the published spec.

Open by default (like /healthz it is for the operator's network; it holds counts, never
payloads). With ``metrics_token`` (or ``metrics_token_file``) set, a scraper must send
``Authorization: Bearer <that token>``; it is a separate secret, not an OAuth client token,
so a scraper never needs an identity-provider client.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotAuthorizedException, NotFoundException
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.observability.telemetry import Telemetry

__all__ = ["metrics_endpoint"]


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    telemetry: Telemetry = request.app.state.telemetry
    if telemetry.metrics is None:
        raise NotFoundException()
    expected = request.app.state.metrics_token
    if expected:
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {expected}".encode()):
            raise NotAuthorizedException(
                detail="/metrics needs the scrape token", headers={"WWW-Authenticate": 'Bearer realm="metrics"'}
            )
    return Response(telemetry.metrics.render(), media_type=CONTENT_TYPE_LATEST)
