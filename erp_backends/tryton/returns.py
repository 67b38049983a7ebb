"""Return authorizations as Tryton sale complaints with a ``sale_return`` action.

Why complaints and not a plain sale with negative quantities (Tryton's other native return):

- A complaint is Tryton's own *authorization* document: it has a number from its own sequence
  (``RMA-...``), a workflow the back office already works with (draft -> waiting -> approved ->
  done, or rejected/cancelled), and it is linked to the original sale and to its lines, so
  "already returned per line" is a query, not a guess from free-standing negative sales.
- Approving it makes Tryton create the return sale itself (negative quantities, origin = the
  complaint), which the warehouse receives and accounting credits as usual. A negative sale
  written by the gateway would skip that approval step and commit stock movements at once.
- It has a free, searchable ``reference`` field for the ``Idempotency-Key``.

What is stored where: ``reference`` = the Idempotency-Key; ``description`` = a human line plus
one machine line ``erp-gateway: {json}`` with the request fingerprint and each line's reason
and comment (Tryton has no field for them). Quantities, prices, order and state are Tryton's own.

Idempotency and concurrency. The gateway's idempotency record lets one attempt per key reach
this adapter at a time; what follows is the ERP-side half, for lost answers, crashed workers
and a record that is down across instances:

1. search the key first: found -> replay (same fingerprint) or ``idempotency-key-reused``; a
   draft older than ``adopt_drafts_after_seconds`` (an interrupted attempt) is submitted first;
2. check the request with ``rules.plan_return`` against the order as ``get_order`` reads it;
3. create the complaint (draft). With the ``erpgw_idempotency`` module (module/, docs/tryton.md)
   ``reference`` is unique: a racing create is refused, and the refused attempt replays the
   winner. Without it, search again, in parallel, for the key and for what the order's live
   complaints hold; among complaints with the same key the OLDEST (lowest id) wins, a younger
   one deletes itself and replays the winner (on SQLite, ids follow commit order; on
   PostgreSQL a window remains, which is why the module exists). The over-return check is
   re-run counting only older complaints, so of two keys racing for the last units the younger
   is deleted and refused;
4. only the survivor is submitted (``wait``, acknowledging Tryton's "similar complaint"
   warning) and approved.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast, get_args

import msgspec

from contracts.v1 import Order, RefundEstimate, ReturnAuthorization, ReturnLine, ReturnRequest
from contracts.v1.returns import ReturnReason, ReturnStatus
from erp_backends.errors import InProgress, NotFound, Rejected
from erp_backends.port import CallContext, IdempotencyToken, ReturnOutcome
from erp_backends.rules import PlannedReturnLine, plan_return, round_money
from erp_backends.tryton.orders import SaleRecord, returned_per_line
from erp_backends.tryton.rpc import TrytonRpc
from erp_backends.tryton.workflow import Step, advance

__all__ = ["ComplaintReturns"]

_MARK = "erp-gateway: "
_FIELDS = [
    "number",
    "state",
    "reference",
    "description",
    "create_date",
    "actions.result",
    "actions.sale_lines.quantity",
    "actions.sale_lines.unit_price",
    "actions.sale_lines.line.sequence",
    "actions.sale_lines.line.quantity",
    "actions.sale_lines.line.unit_price",
    "actions.sale_lines.line.product.code",
    "actions.sale_lines.line.sale.number",
    "actions.sale_lines.line.sale.currency.code",
]
_REASONS = frozenset(get_args(ReturnReason))
_STATUS: dict[str, ReturnStatus] = {"rejected": "rejected", "cancelled": "cancelled"}
#: Complaint states an interrupted attempt leaves behind: created, not yet approved.
_UNFINISHED = frozenset({"draft", "waiting"})
#: Submitting (acknowledging Tryton's "similar complaint" warning), then approving.
_SUBMIT = (Step("draft", "wait", "waiting", accept_warnings=True), Step("waiting", "approve", "approved"))


class _Note(msgspec.Struct, kw_only=True):
    """What the gateway keeps in the complaint's description."""

    fingerprint: str
    reasons: list[str]
    comments: list[str | None]


class ComplaintReturns:
    """Create and read returns; ``type_id`` is the complaint type, looked up once by the backend."""

    def __init__(self, rpc: TrytonRpc, *, approve: bool, adopt_after_seconds: float) -> None:
        self._rpc = rpc
        self._approve = approve
        self._adopt_after = adopt_after_seconds

    async def find_by_key(self, key: str, ctx: CallContext) -> list[dict[str, Any]]:
        """Complaints carrying the key, oldest first."""
        rows: list[dict[str, Any]] = await self._rpc.call(
            "model.sale.complaint.search_read",
            [["reference", "=", key]],
            0,
            None,
            [["id", "ASC"]],
            _FIELDS,
            ctx=ctx,
        )
        return rows

    async def get(self, rma_number: str, ctx: CallContext) -> ReturnAuthorization:
        rows = await self._rpc.call(
            "model.sale.complaint.search_read", [["number", "=", rma_number]], 0, 1, None, _FIELDS, ctx=ctx
        )
        if not rows:
            raise NotFound("return authorization", rma_number)
        return await self._authorization(rows[0], ctx)

    async def replay(self, complaint: dict[str, Any], token: IdempotencyToken, ctx: CallContext) -> ReturnOutcome:
        note = _read_note(complaint["description"])
        if note is None or note.fingerprint != token.fingerprint:
            raise Rejected(
                "idempotency-key-reused",
                f"Idempotency-Key was already used for a different request (return {complaint['number']})",
                field="Idempotency-Key",
            )
        return ReturnOutcome(authorization=await self._authorization(complaint, ctx), replayed=True)

    async def adopt(self, complaint: dict[str, Any], token: IdempotencyToken, ctx: CallContext) -> ReturnOutcome:
        """Replay the complaint the key made; if the attempt that made it stopped before
        submitting it (crash, timeout, ERP outage), finish its workflow first: no orphan draft.

        An unfinished complaint younger than ``adopt_after_seconds`` may still be on its way (the
        attempt that made it racing this one, or cut off by a gateway timeout while Tryton goes
        on): ``InProgress``, try again later. It is never answered as if it were authorized: that
        answer would be kept and replayed while the complaint stayed unapproved."""
        outcome = await self.replay(complaint, token, ctx)  # refuses another body before touching it
        if not (self._approve and complaint["state"] in _UNFINISHED):
            return outcome
        created: datetime = complaint["create_date"]
        age = (datetime.now(UTC) - created).total_seconds()
        if age < self._adopt_after:
            raise InProgress(
                f"return {complaint['number']} is still being authorized; retry shortly",
                retry_after=min(self._adopt_after - age, 5.0),
            )
        await self._submit(complaint["id"], complaint["state"], ctx)
        (row,) = await self._rpc.call("model.sale.complaint.read", [complaint["id"]], _FIELDS, ctx=ctx)
        return ReturnOutcome(authorization=await self._authorization(row, ctx), replayed=True)

    async def _submit(self, complaint_id: int, state: str, ctx: CallContext) -> None:
        """Submit and approve from ``state``; an attempt killed mid-write may still be at it in Tryton."""
        await advance(self._rpc, "sale.complaint", complaint_id, state, _SUBMIT, ctx, onward=frozenset({"done"}))

    async def create(
        self, request: ReturnRequest, token: IdempotencyToken, sale: SaleRecord, type_id: int, ctx: CallContext
    ) -> ReturnOutcome:
        try:
            planned = plan_return(request, sale.order)
            complaint_id = await self._create(token, sale, type_id, planned, ctx)
        except Rejected:
            # Another attempt with this key got there first: the order read after it committed
            # (its units now count as returned), or the erpgw_idempotency module refused ours.
            same_key = await self.find_by_key(token.key, ctx)
            if same_key:
                return await self.adopt(same_key[0], token, ctx)
            raise
        same_key, older_returns = await asyncio.gather(
            self.find_by_key(token.key, ctx),
            returned_per_line(self._rpc, [["line.sale", "=", sale.sale_id]], ctx, before_complaint=complaint_id),
        )
        winner = same_key[0] if same_key else None
        if winner is not None and winner["id"] != complaint_id:  # without the module: the oldest wins
            await self._delete(complaint_id, ctx)
            return await self.adopt(winner, token, ctx)
        try:
            plan_return(request, _with_returned(sale, older_returns))
        except Rejected:
            await self._delete(complaint_id, ctx)  # an older complaint took the units first
            raise
        if self._approve:
            await self._submit(complaint_id, "draft", ctx)
        (row,) = await self._rpc.call("model.sale.complaint.read", [complaint_id], _FIELDS, ctx=ctx)
        return ReturnOutcome(authorization=await self._authorization(row, ctx), replayed=False)

    async def _create(
        self,
        token: IdempotencyToken,
        sale: SaleRecord,
        type_id: int,
        planned: list[PlannedReturnLine],
        ctx: CallContext,
    ) -> int:
        """The draft complaint carrying the key, the fingerprint and the planned lines."""
        note = _Note(
            fingerprint=token.fingerprint,
            reasons=[p.reason for p in planned],
            comments=[p.comment for p in planned],
        )
        (complaint_id,) = await self._rpc.call(
            "model.sale.complaint.create",
            [
                {
                    "customer": sale.party_id,
                    "type": type_id,
                    "origin": f"sale.sale,{sale.sale_id}",
                    "reference": token.key,
                    "description": f"Storefront return of {sale.order.order_number}\n"
                    + _MARK
                    + msgspec.json.encode(note).decode(),
                    "actions": [
                        ["create", [{"action": "sale_return", "sale_lines": [["create", _lines(planned, sale)]]}]]
                    ],
                }
            ],
            ctx=ctx,
        )
        return int(complaint_id)

    async def _delete(self, complaint_id: int, ctx: CallContext) -> None:
        await self._rpc.call("model.sale.complaint.delete", [complaint_id], ctx=ctx)

    async def _authorization(self, complaint: dict[str, Any], ctx: CallContext) -> ReturnAuthorization:
        note = _read_note(complaint["description"])
        rows = [row for action in complaint["actions."] for row in sorted(action["sale_lines."], key=lambda r: r["id"])]
        lines: list[ReturnLine] = []
        order_number, currency = "", ""
        for index, row in enumerate(rows):
            line = row["line."]
            order_number, currency = line["sale."]["number"], line["sale."]["currency."]["code"]
            quantity = int(row["quantity"] if row["quantity"] is not None else line["quantity"])
            unit_price = round_money(row["unit_price"] if row["unit_price"] is not None else line["unit_price"])
            kept = note.reasons[index] if note and index < len(note.reasons) else "other"
            reason = cast(ReturnReason, kept if kept in _REASONS else "other")
            lines.append(
                ReturnLine(
                    line_ref=str(line["sequence"] if line["sequence"] is not None else line["id"]),
                    sku=(line.get("product.") or {}).get("code") or "",
                    quantity=quantity,
                    reason=reason,
                    unit_price=unit_price,
                    refund_amount=round_money(unit_price * quantity),
                )
            )
        created_at: datetime = complaint["create_date"]
        return ReturnAuthorization(
            rma_number=complaint["number"],
            order_number=order_number,
            status=await self._status(complaint, ctx),
            created_at=created_at,
            lines=lines,
            refund_estimate=RefundEstimate(
                currency=currency, amount=sum((line.refund_amount for line in lines), Decimal("0.00"))
            ),
        )

    async def _status(self, complaint: dict[str, Any], ctx: CallContext) -> ReturnStatus:
        """Rejected/cancelled as Tryton says; received/refunded from the return sale once it exists."""
        if complaint["state"] in _STATUS:
            return _STATUS[complaint["state"]]
        sale_ids = [
            int(result.split(",")[1])
            for action in complaint["actions."]
            if (result := action.get("result")) and result.startswith("sale.sale,")
        ]
        if not sale_ids:
            return "authorized"
        sales = await self._rpc.call("model.sale.sale.read", sale_ids, ["shipment_state", "invoice_state"], ctx=ctx)
        if sales and all(s["invoice_state"] == "paid" for s in sales):
            return "refunded"
        if sales and all(s["shipment_state"] == "sent" for s in sales):
            return "received"
        return "authorized"


def _lines(planned: list[PlannedReturnLine], sale: SaleRecord) -> list[dict[str, Any]]:
    return [
        {"line": sale.line_ids[p.order_line.line_ref], "quantity": p.quantity, "unit_price": p.order_line.unit_price}
        for p in planned
    ]


def _with_returned(sale: SaleRecord, returned: dict[int, int]) -> Order:
    by_ref: dict[str, int] = defaultdict(int)
    for ref, line_id in sale.line_ids.items():
        by_ref[ref] = returned.get(line_id, 0)
    lines = [msgspec.structs.replace(line, returned_quantity=by_ref[line.line_ref]) for line in sale.order.lines]
    return msgspec.structs.replace(sale.order, lines=lines)


def _read_note(description: str | None) -> _Note | None:
    for text in (description or "").splitlines():
        if text.startswith(_MARK):
            try:
                return msgspec.json.decode(text[len(_MARK) :], type=_Note)
            except (msgspec.ValidationError, msgspec.DecodeError):
                return None
    return None
