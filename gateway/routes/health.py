"""/healthz (the process answers) and /readyz (the backend answers too)."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example

from gateway.bootstrap import Check
from gateway.routes._deps import AnyRequest, runtime_of
from gateway.routes._openapi import problems

__all__ = ["HealthController"]

READY_TIMEOUT_SECONDS = 2.0


class Health(msgspec.Struct, kw_only=True, frozen=True):
    """``ok``; ``degraded`` when an optional dependency (Redis) is down; ``unavailable``."""

    status: str
    checks: list[Check] = msgspec.field(default_factory=list)


class HealthController(Controller):
    tags = ["operations"]

    @get(
        "/healthz",
        operation_id="healthz",
        summary="Liveness: the process answers",
        description="Always `ok` while the process serves requests; checks nothing else (see `/readyz`). No token.",
        responses=problems(),
    )
    async def healthz(self) -> Health:
        return Health(status="ok")

    @get(
        "/readyz",
        operation_id="readyz",
        summary="Readiness: the ERP backend answers",
        description=(
            "503 when the ERP does not answer. A down Redis or an open breaker is reported (`degraded`) but "
            "keeps the instance in rotation: it still serves from its in-process tier. No token."
        ),
        responses={
            **problems(),
            503: ResponseSpec(
                data_container=Health,
                generate_examples=False,
                description="A dependency is down",
                examples=[
                    Example(
                        summary="ERP down",
                        value={
                            "status": "unavailable",
                            "checks": [
                                {
                                    "name": "backend:tryton",
                                    "ok": False,
                                    "required": True,
                                    "detail": "connection refused",
                                }
                            ],
                        },
                    )
                ],
            ),
        },
    )
    async def readyz(self, request: AnyRequest) -> Response[Health]:
        runtime = runtime_of(request)
        try:
            checks = await asyncio.wait_for(runtime.readiness(), READY_TIMEOUT_SECONDS)
        except TimeoutError:
            checks = [Check(name="readiness", ok=False, detail="checks timed out")]
        if any(c.required and not c.ok for c in checks):
            status, code = "unavailable", 503
        elif all(c.ok for c in checks):
            status, code = "ok", 200
        else:
            status, code = "degraded", 200
        return Response(Health(status=status, checks=checks), status_code=code)
