"""/healthz (the process answers) and /readyz (the backend answers too)."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example

from erp_backends.errors import ErpError
from gateway.routes._deps import Erp

__all__ = ["HealthController"]

READY_TIMEOUT_SECONDS = 2.0


class Check(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    ok: bool
    detail: str | None = None


class Health(msgspec.Struct, kw_only=True, frozen=True):
    status: str
    checks: list[Check] = msgspec.field(default_factory=list)


class HealthController(Controller):
    tags = ["operations"]

    @get("/healthz", operation_id="healthz", summary="Liveness: the process answers", include_in_schema=True)
    async def healthz(self) -> Health:
        return Health(status="ok")

    @get(
        "/readyz",
        operation_id="readyz",
        summary="Readiness: the ERP backend answers",
        description="503 with the failed checks when a dependency is down.",
        responses={
            503: ResponseSpec(
                data_container=Health,
                generate_examples=False,
                description="A dependency is down",
                examples=[
                    Example(
                        summary="ERP down",
                        value={
                            "status": "unavailable",
                            "checks": [{"name": "backend:tryton", "ok": False, "detail": "connection refused"}],
                        },
                    )
                ],
            )
        },
    )
    async def readyz(self, erp: Erp) -> Response[Health]:
        try:
            await asyncio.wait_for(erp.check_ready(), READY_TIMEOUT_SECONDS)
            check = Check(name=f"backend:{erp.name}", ok=True)
        except (ErpError, TimeoutError) as exc:
            check = Check(name=f"backend:{erp.name}", ok=False, detail=str(exc) or "timed out")
        status = "ok" if check.ok else "unavailable"
        return Response(Health(status=status, checks=[check]), status_code=200 if check.ok else 503)
