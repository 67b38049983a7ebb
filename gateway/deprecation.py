"""Deprecating an operation: the spec says so, and every answer it gives says when it goes.

A route is marked with ``@get(..., **deprecated(since="2027-01-01", sunset="2027-06-30",
successor="/v2/orders/{orderNumber}"))`` (it composes with ``**requires(...)``). Then:

- the spec marks the operation ``deprecated: true`` and documents the three headers;
- every answer the route gives (errors included) carries, from the ``before_send`` pass
  (``gateway.response_headers``):
  ``Deprecation: @<unix seconds>`` (RFC 9745, a structured-field date: when it was, or will be,
  deprecated), ``Sunset: <HTTP-date>`` (RFC 8594: from then on it may answer 404/410), and
  ``Link: <successor>; rel="successor-version"`` (RFC 5829), plus ``<docs>; rel="deprecation"``
  (RFC 9745) when a migration guide is named.

No v1 operation is deprecated today; the mechanics are ready for v2 (README "The contract").
"""

from __future__ import annotations

import calendar
import datetime as dt
from email.utils import formatdate
from typing import Any

import msgspec
from litestar.datastructures import ResponseHeader
from litestar.types import Scope

__all__ = ["DEPRECATION_OPT", "Deprecation", "deprecated", "deprecation_headers"]

#: The route handler's ``opt`` key holding its ``Deprecation``.
DEPRECATION_OPT = "erpgw_deprecation"


class Deprecation(msgspec.Struct, frozen=True):
    since: dt.date
    sunset: dt.date
    successor: str | None = None
    docs: str | None = None

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The answer's headers, encoded once (the route's answers all carry the same)."""
        out = [
            (b"deprecation", f"@{_epoch(self.since)}".encode("ascii")),
            (b"sunset", formatdate(_epoch(self.sunset), usegmt=True).encode("ascii")),
        ]
        links = []
        if self.successor:
            links.append(f'<{self.successor}>; rel="successor-version"')
        if self.docs:
            links.append(f'<{self.docs}>; rel="deprecation"')
        if links:
            out.append((b"link", ", ".join(links).encode("ascii")))
        return out


def _epoch(day: dt.date) -> int:
    return calendar.timegm(day.timetuple())  # midnight UTC


def deprecated(
    *, since: str | dt.date, sunset: str | dt.date, successor: str | None = None, docs: str | None = None
) -> dict[str, Any]:
    """Route decorator arguments deprecating the operation (see the module docstring).

    ``since`` and ``sunset`` are ISO dates (``"2027-06-30"``), midnight UTC; ``successor`` is the
    operation that replaces it (a path or URL), ``docs`` a migration guide. The route's own
    ``response_headers`` cannot be combined with this (name them here if one ever needs both)."""
    notice = Deprecation(since=_date(since), sunset=_date(sunset), successor=successor, docs=docs)
    if notice.sunset < notice.since:
        raise ValueError(f"sunset {notice.sunset} is before the deprecation date {notice.since}")
    for name, value in (("successor", successor), ("docs", docs)):
        if value is not None and (not value.isascii() or any(c in value for c in '<>" ')):
            raise ValueError(f"{name} {value!r} is not a URI reference")
    documented = [
        ResponseHeader(
            name="Deprecation",
            value=notice.headers()[0][1].decode(),
            documentation_only=True,
            description="RFC 9745: this operation is deprecated (since this date, Unix seconds).",
        ),
        ResponseHeader(
            name="Sunset",
            value=notice.headers()[1][1].decode(),
            documentation_only=True,
            description="RFC 8594: the operation may stop answering after this date.",
        ),
    ]
    if successor or docs:
        documented.append(
            ResponseHeader(
                name="Link",
                value=notice.headers()[2][1].decode(),
                documentation_only=True,
                description='The successor operation (`rel="successor-version"`) and migration guide.',
            )
        )
    return {"deprecated": True, DEPRECATION_OPT: notice, "response_headers": documented}


def _date(value: str | dt.date) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def deprecation_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The deprecation headers of the route that answers, or none (most routes, unrouted answers)."""
    handler = scope.get("route_handler")
    notice: Deprecation | None = handler.opt.get(DEPRECATION_OPT) if handler is not None else None
    return notice.headers() if notice is not None else []
