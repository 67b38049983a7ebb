"""Tryton returns on SQLite and PostgreSQL: the ERP-side half of "one document per key".

Without the gateway's record in front (as while Redis is down across instances), same-key
attempts racing straight into the adapter make one complaint, thanks to the erpgw_idempotency
module's unique key; and a retry adopts the draft an interrupted attempt left behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import pytest

from contracts.v1 import ReturnRequest, ReturnRequestLine
from erp_backends.errors import InProgress, Rejected
from erp_backends.port import CallContext, IdempotencyToken, ReturnOutcome
from erp_backends.tryton import TrytonBackend
from erp_backends.tryton.returns import ComplaintReturns
from erp_backends.tryton.rpc import TrytonRpc, TrytonSession
from tests.harness.tryton import TrytonServer
from tests.harness.tryton_fixtures import tryton_settings

pytestmark = pytest.mark.tryton

CTX = CallContext(correlation_id="tryton-returns")
REQUEST = ReturnRequest(
    order_number="SO-1003", lines=[ReturnRequestLine(sku="HOOD-BLK-L", quantity=1, reason="damaged")]
)

#: ``adapter(**settings)``: a fresh adapter (its own login) on the test's server.
MakeAdapter = Callable[..., TrytonBackend]


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest) -> TrytonServer:
    name = "tryton" if request.param == "sqlite" else "tryton_pg"
    found: TrytonServer = request.getfixturevalue(name)
    return found


@pytest.fixture
async def adapter(server: TrytonServer) -> AsyncIterator[MakeAdapter]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=2.0)) as client:
        session = TrytonSession()

        def make(**settings: object) -> TrytonBackend:
            return TrytonBackend(msgspec.structs.replace(tryton_settings(server), **settings), client, session=session)

        yield make


def _complaints(server: TrytonServer, key: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = server.rpc().model(
        "sale.complaint", "search_read", [["reference", "=", key]], 0, None, None, ["number", "state"]
    )
    return found


async def test_same_key_attempts_racing_into_the_erp_make_one_complaint(
    server: TrytonServer, adapter: MakeAdapter
) -> None:
    token = IdempotencyToken.for_request("race-into-tryton-0001", REQUEST)
    backends = [adapter() for _ in range(4)]  # four workers, each its own connection pool user
    answers = await asyncio.gather(
        *(backends[i % 4].create_return(REQUEST, token, CTX) for i in range(12)), return_exceptions=True
    )
    outcomes = [a for a in answers if isinstance(a, ReturnOutcome)]
    # the losers were told to retry (never a 422, never an unfinished complaint as their answer)
    assert all(isinstance(a, InProgress) for a in answers if not isinstance(a, ReturnOutcome)), answers
    numbers = {o.authorization.rma_number for o in outcomes}
    assert len(numbers) == 1
    assert [c["number"] for c in _complaints(server, token.key)] == list(numbers)
    assert sum(not o.replayed for o in outcomes) == 1
    retried = await adapter().create_return(REQUEST, token, CTX)  # once the winner is done: its answer
    assert retried.replayed
    assert {retried.authorization.rma_number} == numbers


async def test_a_draft_left_by_a_cut_short_attempt_is_finished_by_the_retry(
    server: TrytonServer, adapter: MakeAdapter
) -> None:
    token = IdempotencyToken.for_request("adopt-the-draft-0001", REQUEST)
    first = await adapter(approve_returns=False).create_return(REQUEST, token, CTX)  # stops before submitting
    assert [c["state"] for c in _complaints(server, token.key)] == ["draft"]
    with pytest.raises(InProgress) as young:  # may still be on its way: left alone, retry later
        await adapter().create_return(REQUEST, token, CTX)
    assert 0 < young.value.retry_after <= 5
    assert [c["state"] for c in _complaints(server, token.key)] == ["draft"]
    outcome = await adapter(adopt_drafts_after_seconds=0).create_return(REQUEST, token, CTX)
    assert outcome.replayed
    assert outcome.authorization.rma_number == first.authorization.rma_number
    assert [c["state"] for c in _complaints(server, token.key)] in (["approved"], ["done"])  # one, no orphan draft


async def test_a_retry_that_presses_a_button_the_cut_off_attempt_pressed_meanwhile_finishes_the_complaint(
    server: TrytonServer, adapter: MakeAdapter
) -> None:
    """A worker killed mid-write leaves its request running in Tryton: the retry reads the draft,
    then the killed attempt's ``wait`` commits, and Tryton refuses the retry's own ``wait``
    ("You can not call wait"). That refusal is no rejection: the retry approves and answers."""
    token = IdempotencyToken.for_request("button-pressed-meanwhile-0001", REQUEST)
    await adapter(approve_returns=False).create_return(REQUEST, token, CTX)
    settings = tryton_settings(server)
    async with httpx.AsyncClient(timeout=60.0) as client:
        rpc = _RefusalsSeen(settings, client, settings.resolve_password())
        returns = ComplaintReturns(rpc, approve=True, adopt_after_seconds=0)
        (stale,) = await returns.find_by_key(token.key, CTX)
        assert stale["state"] == "draft"
        server.rpc().model("sale.complaint", "wait", [stale["id"]], accept_warnings=True)  # the cut-off attempt
        outcome = await returns.adopt(stale, token, CTX)
    assert rpc.refused == ["model.sale.complaint.wait"]  # Tryton did refuse the retry's button
    assert outcome.replayed
    assert [c["state"] for c in _complaints(server, token.key)] in (["approved"], ["done"])


class _RefusalsSeen(TrytonRpc):
    """The adapter's RPC, noting each call Tryton refused."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.refused: list[str] = []

    async def call(self, method: str, *params: Any, **kw: Any) -> Any:
        try:
            return await super().call(method, *params, **kw)
        except Rejected:
            self.refused.append(method)
            raise
