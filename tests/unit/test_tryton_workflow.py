"""``advance``: a button Tryton refuses is no failure only when the record moved on along the
workflow (another attempt pressed it meanwhile); anywhere else, the refusal stands."""

from __future__ import annotations

from typing import Any, cast

import pytest

from erp_backends.errors import Rejected
from erp_backends.port import CallContext
from erp_backends.tryton.rpc import TrytonRpc
from erp_backends.tryton.workflow import Step, advance

CTX = CallContext(correlation_id="workflow")
STEPS = (Step("draft", "wait", "waiting"), Step("waiting", "approve", "approved"))


class ScriptedTryton:
    """Refuses the buttons named in ``refuse``, and then reads the record as ``then``."""

    def __init__(self, refuse: set[str], then: str) -> None:
        self.refuse, self.then = refuse, then
        self.pressed: list[str] = []

    async def call(self, method: str, *params: Any, ctx: CallContext, accept_warnings: bool = False) -> Any:
        button = method.rsplit(".", 1)[1]
        if button == "read":
            return [{"id": params[0][0], "state": self.then}]
        self.pressed.append(button)
        if button in self.refuse:
            raise Rejected("rejected-by-erp", f'You can not call "{button}" on "RMA-1" of "Sale Complaint".')
        return None


async def _advance(tryton: ScriptedTryton, state: str = "draft", onward: frozenset[str] = frozenset()) -> str:
    return await advance(cast(TrytonRpc, tryton), "sale.complaint", 1, state, STEPS, CTX, onward=onward)


async def test_every_button_is_pressed_from_where_the_record_is() -> None:
    tryton = ScriptedTryton(set(), "")
    assert await _advance(tryton) == "approved"
    assert tryton.pressed == ["wait", "approve"]
    tryton = ScriptedTryton(set(), "")
    assert await _advance(tryton, "waiting") == "approved"
    assert tryton.pressed == ["approve"]


async def test_a_button_another_attempt_pressed_meanwhile_is_no_failure() -> None:
    tryton = ScriptedTryton({"wait"}, then="waiting")
    assert await _advance(tryton) == "approved"
    assert tryton.pressed == ["wait", "approve"]
    # the other attempt got further still: nothing left to press
    tryton = ScriptedTryton({"wait"}, then="approved")
    assert await _advance(tryton) == "approved"
    assert tryton.pressed == ["wait"]
    tryton = ScriptedTryton({"approve"}, then="done")
    assert await _advance(tryton, "waiting", onward=frozenset({"done"})) == "done"


@pytest.mark.parametrize(
    ("refused", "state", "then"),
    [
        ("wait", "draft", "draft"),  # refused for a reason of its own
        ("wait", "draft", "cancelled"),  # cancelled by the back office: not moved on
        ("approve", "waiting", "draft"),  # reset to draft: never answered as approved
        ("approve", "waiting", "rejected"),
        ("approve", "waiting", "done"),  # "done" counts only when the caller says it comes after
    ],
)
async def test_a_refusal_stands_unless_the_record_moved_on(refused: str, state: str, then: str) -> None:
    with pytest.raises(Rejected, match="You can not call"):
        await _advance(ScriptedTryton({refused}, then), state)
