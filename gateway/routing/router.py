"""Which backend serves each call, stated once (``RoutingSettings``), as one ``ErpBackend`` the
routes call: every port operation goes through ``RoutedBackend.handle``, which picks a policy
chain (each backend has its own cache, breakers, call budget and metrics label), and notes the
backend that answered (the ``ERP-Backend`` response header). A backend that is down fails only
the calls routed to it.

Lookups (``get_order``, ``find_orders``, ``get_return``) with a ``lookup_order`` ask those
backends in turn: the first that knows the document answers (``find_orders``: the first with
any order of that reference); none knows it: 404; one of them could not answer and none knew
it: that failure (the order may be in the one that is down). A return is authorized by the
backend the order is found in. A caller's or a channel's own rule for an operation wins over the
lookups.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from contracts.v1 import OrderList
from erp_backends.errors import ErpError, NotFound
from erp_backends.invocation import Invocation
from erp_backends.operations import OPERATIONS
from erp_backends.wrapping import WrappingBackend
from gateway.routing.settings import LOOKUPS, RoutingSettings
from gateway.routing.shadow import Shadow
from policies.chain import PolicyChain

__all__ = ["RoutedBackend"]

T = TypeVar("T")


class RoutedBackend(WrappingBackend):
    def __init__(
        self,
        chains: Mapping[str, PolicyChain],
        default: str,
        settings: RoutingSettings,
        shadow: Shadow | None = None,
    ) -> None:
        super().__init__(chains[default].backend)
        self.chains = dict(chains)
        self.default = default
        self._operations = dict(settings.operations)
        self._clients = {client: dict(rules) for client, rules in settings.clients.items()}
        self._channels = {channel.lower(): dict(rules) for channel, rules in settings.channels.items()}
        self._lookups = settings.lookups()
        self.shadow = shadow
        self._serves = self._derive_serves()

    def chain_for(self, operation: str, client_id: str | None = None, channel: str | None = None) -> PolicyChain:
        """The chain serving ``operation`` for this caller (the rules' order: ``RoutingSettings``)."""
        name = self._caller_rule(operation, client_id, channel)
        return self.chains[name or self._operations.get(operation, self.default)]

    def _caller_rule(self, operation: str, client_id: str | None, channel: str | None) -> str | None:
        """The backend the caller's own rule names, else its channel's; never for ``create_order``:
        intake posts every order where it judged its stock, whoever sent it (``operations``)."""
        if operation == "create_order":
            return None
        for rules in (self._clients.get(client_id or ""), self._channels.get((channel or "").lower())):
            if rules is not None and (name := rules.get(operation) or rules.get("default")):
                return name
        return None

    def serves(self) -> dict[str, frozenset[str]]:
        """backend -> the operations some rule (or the default) sends to it (fixed at start-up)."""
        return self._serves

    def _derive_serves(self) -> dict[str, frozenset[str]]:
        out: dict[str, set[str]] = {name: set() for name in self.chains}
        callers = [(client, None) for client in self._clients] + [(None, channel) for channel in self._channels]
        for operation in OPERATIONS:
            out[self._operations.get(operation, self.default)].add(operation)
            for client, channel in callers:
                if (name := self._caller_rule(operation, client, channel)) is not None:
                    out[name].add(operation)
            if operation in LOOKUPS:
                for name in self._lookups:
                    out[name].add(operation)
        return {name: frozenset(operations) for name, operations in out.items()}

    async def handle(self, invocation: Invocation[T]) -> T:
        operation, ctx = invocation.operation, invocation.ctx
        spanning = bool(self._lookups) and self._caller_rule(operation, ctx.client_id, ctx.channel) is None
        if spanning and operation in LOOKUPS:
            name, answer = await self._look_up(invocation)
        else:
            if spanning and operation == "create_return":  # where the order is: the ERP that shipped it
                order: Invocation[Any] = Invocation("get_order", (invocation.args[0].order_number,), invocation.ctx)
                name = (await self._look_up(order))[0]
            else:
                name = self.chain_for(operation, ctx.client_id, ctx.channel).name
            answer = await invocation.send(self.chains[name].backend)
        if invocation.ctx.notes is not None:
            invocation.ctx.notes.backend = name
        # a lookup has asked every backend of lookup_order already: shadowing it again is noise
        if self.shadow is not None and not (spanning and operation in LOOKUPS and self.shadow.name in self._lookups):
            self.shadow.offer(invocation, answer, name)
        return answer

    async def _look_up(self, invocation: Invocation[T]) -> tuple[str, T]:
        failure: ErpError | None = None
        missing: NotFound | None = None
        for name in self._lookups:
            try:
                answer: Any = await invocation.send(self.chains[name].backend)
            except NotFound as exc:
                missing = missing or exc
                continue
            except ErpError as exc:  # this one cannot say; a later one may know it
                failure = failure or exc
                continue
            if isinstance(answer, OrderList) and not answer.items:
                continue
            return name, cast(T, answer)
        if failure is not None:
            raise failure
        if missing is not None:
            raise missing
        return self._lookups[0], cast(T, OrderList(items=[]))  # find_orders: none anywhere
