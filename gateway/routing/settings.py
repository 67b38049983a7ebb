"""Settings of routing and shadow reads (``[routing]``, ``ERPGW_ROUTING__*``).

Who serves a call, first match wins:

1. ``clients.<client id>.<operation>``, then ``clients.<client id>.default``: one caller (a
   regional storefront, a partner) on its own backend;
2. ``channels.<channel>.<operation>``, then ``channels.<channel>.default``: one sales channel
   (``pos``, ``marketplace``: the token's ``auth.channel_claim``), whichever client calls;
3. ``operations.<operation>``: one capability moved (``get_availability = "next"``);
4. ``default_backend``.

``lookup_order`` (``"next,legacy"``): order and return lookups ask these backends in turn and
answer from the first that knows the order, so one placed before the cutover is still found.
"""

from __future__ import annotations

import msgspec

from erp_backends.operations import OPERATIONS

__all__ = ["LOOKUPS", "SHADOWABLE", "RoutingSettings", "ShadowSettings", "names"]

#: Operations that find one document, asked along ``lookup_order``.
LOOKUPS: frozenset[str] = frozenset({"get_order", "find_orders", "get_return"})
#: Reads a shadow backend may be asked too (they write nothing).
SHADOWABLE: frozenset[str] = frozenset(
    {"get_availability", "check_prices", "validate_order", "get_order", "find_orders"}
)
_DEFAULT_SHADOWED = "get_availability,check_prices,validate_order,get_order,find_orders"


class ShadowSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: The backend asked beside the one that answers; empty: no shadow reads.
    backend: str = ""
    #: Share of the calls of ``operations`` also sent to it (0 to 1).
    sample_rate: float = 0.0
    #: Comma-separated reads to shadow (of: get_availability, check_prices, validate_order,
    #: get_order, find_orders).
    operations: str = _DEFAULT_SHADOWED
    #: Shadow calls one process runs at once; a sampled call beyond them is skipped (counted).
    max_in_flight: int = 8
    #: Mismatches kept for the report (the newest; older ones are dropped).
    keep: int = 200
    #: Comma-separated known differences left out of the comparison: field paths with list
    #: positions as ``[*]``, matched whole or as a suffix (``source.rule,shipments[*]``: what a
    #: Tryton adapter answers unlike the sample ERP, docs/tryton.md).
    ignore: str = ""
    #: SQLite file of the mismatch sample when no Redis is configured (every worker of one host).
    path: str = "var/shadow.sqlite"


class RoutingSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: operation -> backend name (``get_availability``, ``check_prices``, ``validate_order``,
    #: ``get_order``, ``find_orders``, ``create_return``, ``get_return``, ``create_order``).
    operations: dict[str, str] = msgspec.field(default_factory=dict)
    #: client id -> (operation or ``default``) -> backend name.
    clients: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)
    #: sales channel (the token's ``auth.channel_claim``) -> (operation or ``default``) -> backend name.
    channels: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)
    #: Comma-separated backends order and return lookups ask in turn; empty: routed as any call.
    lookup_order: str = ""
    shadow: ShadowSettings = msgspec.field(default_factory=ShadowSettings)

    def lookups(self) -> list[str]:
        return names(self.lookup_order)

    def shadowed(self) -> frozenset[str]:
        return frozenset(names(self.shadow.operations)) if self.shadow.backend else frozenset()

    def problems(self, backends: list[str], default: str = "") -> list[tuple[str, str]]:
        """(dotted setting, what is wrong) for every rule naming what does not exist."""
        out: list[tuple[str, str]] = []

        def backend(dotted: str, name: str) -> None:
            if name not in backends:
                out.append((dotted, f"{name!r} is not a configured backend; one of: {', '.join(backends)}"))

        for operation, name in self.operations.items():
            if operation not in OPERATIONS:
                out.append((f"routing.operations.{operation}", f"no such operation; one of: {', '.join(OPERATIONS)}"))
            backend(f"routing.operations.{operation}", name)
        callers = [("clients", who, rules) for who, rules in self.clients.items()]
        callers += [("channels", which, rules) for which, rules in self.channels.items()]
        for kind, caller, rules in callers:
            for operation, name in rules.items():
                dotted = f"routing.{kind}.{caller}.{operation}"
                if operation != "default" and operation not in OPERATIONS:
                    out.append((dotted, "no such operation (or default)"))
                if operation == "create_order":
                    hint = "orders are posted where intake judged their stock, whoever sent them: use operations"
                    out.append((dotted, hint))
                backend(dotted, name)
        for name in self.lookups():
            backend("routing.lookup_order", name)
        if len(set(self.lookups())) != len(self.lookups()):
            out.append(("routing.lookup_order", "names a backend twice"))
        if self.shadow.sample_rate > 0 and not self.shadow.backend:
            out.append(("routing.shadow.sample_rate", "set routing.shadow.backend too: the backend to shadow reads to"))
        if self.shadow.backend:
            backend("routing.shadow.backend", self.shadow.backend)
            if self.shadow.backend == default and not (self.operations or self.clients or self.channels):
                out.append(("routing.shadow.backend", f"{default!r} serves every read already: shadow another backend"))
            for operation in self.shadowed() - SHADOWABLE:
                out.append(
                    (
                        "routing.shadow.operations",
                        f"{operation!r} cannot be shadowed; of: {', '.join(sorted(SHADOWABLE))}",
                    )
                )
            if not 0 <= self.shadow.sample_rate <= 1:
                out.append(("routing.shadow.sample_rate", "set a share from 0 to 1"))
            if self.shadow.max_in_flight < 1 or self.shadow.keep < 1:
                out.append(("routing.shadow", "max_in_flight and keep must be 1 or more"))
        return out


def names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
