"""Which backend serves each call, stated once (``RoutingSettings``), as one ``ErpBackend`` the
routes call: every port operation goes through ``RoutedBackend.handle``, which picks a policy
chain (each backend has its own cache, breakers, call budget and metrics label), and notes the
backend that answered (the ``ERP-Backend`` response header). A backend that is down fails only
the calls routed to it.

Lookups (``get_order``, ``find_orders``, ``get_return``) with a ``lookup_order`` ask those
backends in turn: the first that knows the document answers; none knows it: 404; one of them
could not answer and none knew it: that failure (the order may be in the one that is down).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from contracts.v1 import OrderList
from erp_backends.errors import ErpError, NotFound
from erp_backends.invocation import Invocation
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
        self._lookups = settings.lookups()
        self.shadow = shadow

    def chain_for(self, operation: str, client_id: str | None) -> PolicyChain:
        """The chain serving ``operation`` for this caller (the rules' order: the module's)."""
        rules = self._clients.get(client_id) if client_id is not None else None
        if rules is not None:
            name = rules.get(operation) or rules.get("default")
            if name is not None:
                return self.chains[name]
        return self.chains[self._operations.get(operation, self.default)]

    def serves(self) -> dict[str, set[str]]:
        """backend -> the operations some rule (or the default) sends to it."""
        from erp_backends.operations import OPERATIONS

        out: dict[str, set[str]] = {name: set() for name in self.chains}
        for operation in OPERATIONS:
            out[self._operations.get(operation, self.default)].add(operation)
            for rules in self._clients.values():
                if (name := rules.get(operation) or rules.get("default")) is not None:
                    out[name].add(operation)
            if operation in LOOKUPS:
                for name in self._lookups:
                    out[name].add(operation)
        return out

    async def handle(self, invocation: Invocation[T]) -> T:
        if invocation.operation in LOOKUPS and self._lookups:
            name, answer = await self._look_up(invocation)
        else:
            name = self.chain_for(invocation.operation, invocation.ctx.client_id).name
            answer = await invocation.send(self.chains[name].backend)
        if invocation.ctx.notes is not None:
            invocation.ctx.notes.backend = name
        if self.shadow is not None:
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
