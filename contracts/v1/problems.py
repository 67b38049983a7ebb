"""RFC 9457 problem details, as every error of the gateway is answered."""

from __future__ import annotations

import msgspec

__all__ = ["FieldError", "Problem"]


class FieldError(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """One invalid input: ``field`` is a JSON-path-like pointer such as ``lines[2].quantity``."""

    field: str
    message: str


class Problem(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True, rename="camel"):
    """``application/problem+json``. ``type`` is stable per kind of error; match on it."""

    type: str
    title: str
    status: int
    detail: str
    correlation_id: str
    #: The path of the request the problem is about; always sent.
    instance: str
    errors: list[FieldError] | None = None
    line: str | None = None
    available: int | None = None
