"""Two contract answers compared field by field, as a migration needs them compared.

Per-call fields (``asOf``, ``freshness``, ``checkedAt``) are left out; money and quantities are
compared as numbers (``Decimal("19.9") == Decimal("19.90")``); a list of items with an identity
(``sku``, ``warehouse``, ``lineRef``, ``orderNumber``, ``rmaNumber``, ``line``) is matched by it,
not by position, so two ERPs listing warehouses in another order agree. A path reads
``items[sku=TEE-NVY-M].warehouses[warehouse=EAST].availableToPromise``.

Known differences (``ignore``): paths with every list position written ``[*]``, matched whole or
as a suffix after a dot (``source.rule`` leaves out ``lines[sku=A].source.rule``;
``shipments[*]`` a shipment one side lists and the other does not, not a shipment's state).

Customer contact data never leaves here: a difference under ``email``, ``phone``, ``address``,
``name``, ``contact`` or ``shippingAddress`` names its path with both values withheld.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec

__all__ = ["IGNORED", "WITHHELD", "Difference", "differences", "ignored"]

#: Fields that differ per call, never per ERP.
IGNORED: frozenset[str] = frozenset({"asOf", "freshness", "checkedAt"})
_IDENTITIES = ("sku", "warehouse", "lineRef", "orderNumber", "rmaNumber", "line")
_PERSONAL: frozenset[str] = frozenset({"email", "phone", "address", "name", "contact", "shippingAddress"})
WITHHELD = "<withheld>"
_POSITION = re.compile(r"\[[^\]]*\]")


class Difference(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    primary: Any
    shadow: Any


def differences(primary: object, shadow: object, limit: int = 50, ignore: Sequence[str] = ()) -> list[Difference]:
    """Where the two answers differ, at most ``limit`` of them, in field order, but for the
    known differences ``ignore`` names."""
    out: list[Difference] = []
    _walk(_plain(primary), _plain(shadow), "", False, out, limit + 1000 if ignore else limit)
    if ignore:
        out = [d for d in out if not ignored(d.path, ignore)]
    return out[:limit]


def ignored(path: str, patterns: Sequence[str]) -> bool:
    general = _POSITION.sub("[*]", path)
    return any(general == p or general.endswith("." + p) for p in patterns)


def _plain(value: object) -> Any:
    return msgspec.to_builtins(value, builtin_types=(Decimal, datetime, date))


def _walk(a: Any, b: Any, path: str, personal: bool, out: list[Difference], limit: int) -> None:
    if len(out) >= limit:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            if key in IGNORED:
                continue
            child = f"{path}.{key}" if path else key
            if key not in a or key not in b:
                if a.get(key) is not None or b.get(key) is not None:  # null and absent say the same
                    _differ(child, a.get(key), b.get(key), personal or key in _PERSONAL, out)
            else:
                _walk(a[key], b[key], child, personal or key in _PERSONAL, out, limit)
        return
    if isinstance(a, list) and isinstance(b, list):
        identity = _identity(a, b)
        if identity is None:
            for index in range(max(len(a), len(b))):
                here = f"{path}[{index}]"
                if index >= len(a) or index >= len(b):
                    _differ(
                        here, a[index] if index < len(a) else None, b[index] if index < len(b) else None, personal, out
                    )
                else:
                    _walk(a[index], b[index], here, personal, out, limit)
            return
        left = {item[identity]: item for item in a}
        right = {item[identity]: item for item in b}
        for key in [*left, *(k for k in right if k not in left)]:
            here = f"{path}[{identity}={key}]"
            if key not in left or key not in right:
                _differ(here, "present" if key in left else None, "present" if key in right else None, personal, out)
            else:
                _walk(left[key], right[key], here, personal, out, limit)
        return
    if not _same(a, b):
        _differ(path, a, b, personal, out)


def _identity(a: list[Any], b: list[Any]) -> str | None:
    """The field that names each item of both lists (unique in each), if there is one."""
    items = [*a, *b]
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    for field in _IDENTITIES:
        if all(field in item for item in items) and all(
            len({item[field] for item in side}) == len(side) for side in (a, b)
        ):
            return field
    return None


def _same(a: Any, b: Any) -> bool:
    if (
        isinstance(a, Decimal | int)
        and isinstance(b, Decimal | int)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        return Decimal(a) == Decimal(b)
    return bool(type(a) is type(b) and a == b)


def _differ(path: str, a: Any, b: Any, personal: bool, out: list[Difference]) -> None:
    if personal:
        a, b = (WITHHELD if a is not None else None), (WITHHELD if b is not None else None)
    out.append(Difference(path=path, primary=_shown(a), shadow=_shown(b)))


def _shown(value: Any) -> Any:
    """A value as the report shows it (JSON): numbers as their text, dates ISO, contact data
    inside a whole item withheld."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: (WITHHELD if k in _PERSONAL and v is not None else _shown(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_shown(item) for item in value]
    return value
