"""Base Structs for every contract type: one place that states the wire conventions.

- ``Request``: what a caller sends. ``forbid_unknown_fields`` turns a misspelt field into a
  clear 400 instead of silently dropping data; ``kw_only`` keeps construction explicit.
- ``Response``: what the gateway answers. ``omit_defaults`` is off so that every documented
  field is always present (``null`` when unknown), which is what partner SDKs expect.
- Both use camelCase on the wire (``rename="camel"``) and snake_case in Python.
"""

from __future__ import annotations

import msgspec

__all__ = ["Request", "Response"]


class Request(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Base of every request body."""


class Response(msgspec.Struct, kw_only=True, rename="camel"):
    """Base of every response body."""
