"""The composition root: which backend, wrapped in which policies, from settings.

This is the one place that knows concrete adapters. Routes receive what ``build_backend``
returns and cannot tell a bare adapter from one wrapped in policies.
"""

from __future__ import annotations

from erp_backends.port import ErpBackend
from erp_backends.sample import SampleBackend
from gateway.settings import Settings

__all__ = ["build_backend"]


def build_backend(settings: Settings) -> ErpBackend:
    if settings.backend == "sample":
        return SampleBackend(settings.sample)
    raise ValueError(f"backend {settings.backend!r} is not available in this build")
