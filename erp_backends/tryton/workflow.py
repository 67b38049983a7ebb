"""Taking a Tryton document through its workflow buttons when another attempt may be at it too.

Tryton refuses a button a record is already past ("You can not call ... on ..."): a worker killed
mid-write leaves its request running in Tryton, and the retry that adopts the record can press
the same button a moment after it. That refusal is no failure when the record moved on along the
workflow; it is one when the record still sits where the button should have taken it from, or
went anywhere else (cancelled, rejected, reset to draft by the back office).
"""

from __future__ import annotations

from typing import NamedTuple

from erp_backends.errors import Rejected
from erp_backends.port import CallContext
from erp_backends.tryton.rpc import TrytonRpc

__all__ = ["Step", "advance"]


class Step(NamedTuple):
    leaves: str
    button: str
    reaches: str
    accept_warnings: bool = False


async def advance(
    rpc: TrytonRpc,
    model: str,
    record_id: int,
    state: str,
    steps: tuple[Step, ...],
    ctx: CallContext,
    *,
    onward: frozenset[str] = frozenset(),
) -> str:
    """Press each step's button from ``state`` on; the state the record ends in. ``onward``: the
    states Tryton moves a record to after the last step by itself (a complaint's ``done``)."""
    path = [steps[0].leaves, *(step.reaches for step in steps)]

    def rank(of: str) -> int:
        return len(path) if of in onward else path.index(of) if of in path else -1

    for step in steps:
        if state != step.leaves:
            continue
        try:
            await rpc.call(f"model.{model}.{step.button}", [record_id], ctx=ctx, accept_warnings=step.accept_warnings)
            state = step.reaches
        except Rejected:
            (row,) = await rpc.call(f"model.{model}.read", [record_id], ["state"], ctx=ctx)
            if rank(row["state"]) <= rank(step.leaves):  # not moved on: refused for a reason of its own
                raise
            state = row["state"]
    return state
