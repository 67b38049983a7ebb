"""The backends the conformance suite runs against. Every one must pass the same tests.

``sample`` gets a fresh database per test. Real ERPs are added here as a parameter with a
fixture that starts the server once per session and resets its data per test module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from erp_backends.port import CallContext, ErpBackend
from erp_backends.sample import SampleBackend

BACKENDS = ["sample"]


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, sample: SampleBackend) -> AsyncIterator[ErpBackend]:
    if request.param == "sample":
        yield sample
    else:  # pragma: no cover - each real ERP adds its branch
        raise AssertionError(request.param)


@pytest.fixture
def ctx() -> CallContext:
    return CallContext(correlation_id="conformance-suite")
