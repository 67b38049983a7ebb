"""GET /v1/admin/shadow/mismatches: the shadow reads' report (``gateway.routing.shadow``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from litestar import Controller, get
from litestar.params import QueryParameter

from contracts.v1 import ShadowDifference, ShadowMismatch, ShadowReport
from gateway.auth.scopes import requires
from gateway.routes._deps import AnyRequest, runtime_of
from gateway.routes._openapi import example, responses
from gateway.routing.mismatches import Mismatch

__all__ = ["ShadowAdminController", "report_of"]

LimitQuery = Annotated[int, QueryParameter(ge=1, le=1000, description="At most this many, newest first.")]


class ShadowAdminController(Controller):
    path = "/v1/admin/shadow"
    tags = ["admin"]

    @get(
        "/mismatches",
        operation_id="listShadowMismatches",
        **requires("admin"),
        summary="Where the shadow backend answered reads unlike the serving one",
        description=(
            "The newest mismatches of shadow reads (`ERPGW_ROUTING__SHADOW__*`), each with the operation, what was "
            "asked, both backends and every differing field path with both values (contact data withheld). "
            "Empty while no shadow is configured. Counts of every outcome are in `/metrics` "
            "(`erpgw_shadow_reads_total`)."
        ),
        responses=responses(200, ShadowReport, "The mismatches", [example("None yet", {"items": []})]),
    )
    async def mismatches(self, request: AnyRequest, limit: LimitQuery = 100) -> ShadowReport:
        log = runtime_of(request).erp.mismatches
        return report_of(await log.recent(limit) if log is not None else [])


def report_of(mismatches: list[Mismatch]) -> ShadowReport:
    return ShadowReport(
        items=[
            ShadowMismatch(
                at=datetime.fromtimestamp(m.at, UTC),
                operation=m.operation,
                subject=m.subject,
                primary=m.primary,
                shadow=m.shadow,
                differences=[ShadowDifference(path=d.path, primary=d.primary, shadow=d.shadow) for d in m.differences],
            )
            for m in mismatches
        ]
    )
