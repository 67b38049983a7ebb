"""Tryton returns after an interrupted attempt: a retry adopts the complaint it left behind."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from contracts.v1 import ReturnRequest, ReturnRequestLine
from erp_backends.port import CallContext, IdempotencyToken
from erp_backends.tryton import TrytonBackend
from erp_backends.tryton.rpc import TrytonSession
from tests.harness.tryton import TrytonServer
from tests.harness.tryton_fixtures import tryton_settings

pytestmark = pytest.mark.tryton

CTX = CallContext(correlation_id="tryton-returns")
REQUEST = ReturnRequest(
    order_number="SO-1003", lines=[ReturnRequestLine(sku="HOOD-BLK-L", quantity=1, reason="damaged")]
)


async def test_a_draft_left_by_a_cut_short_attempt_is_finished_by_the_retry(
    tryton: TrytonServer, tryton_session: TrytonSession
) -> None:
    token = IdempotencyToken.for_request("adopt-the-draft-0001", REQUEST)
    async with httpx.AsyncClient(timeout=httpx.Timeout(20.0, connect=2.0)) as client:
        # The first attempt stops after creating the complaint, before submitting it.
        cut_short = TrytonBackend(
            msgspec.structs.replace(tryton_settings(tryton), approve_returns=False), client, session=tryton_session
        )
        first = await cut_short.create_return(REQUEST, token, CTX)
        assert (
            tryton.rpc().model(
                "sale.complaint", "search_read", [["reference", "=", token.key]], 0, None, None, ["state"]
            )[0]["state"]
            == "draft"
        )
        retry = TrytonBackend(tryton_settings(tryton), client, session=tryton_session)
        outcome = await retry.create_return(REQUEST, token, CTX)
    assert outcome.replayed
    assert outcome.authorization.rma_number == first.authorization.rma_number
    complaints = tryton.rpc().model(
        "sale.complaint", "search_read", [["reference", "=", token.key]], 0, None, None, ["state"]
    )
    assert [c["state"] for c in complaints] in (["approved"], ["done"])  # one complaint, no orphan draft
