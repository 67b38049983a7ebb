"""The backends the conformance suite runs against. Every one must pass the same tests.

``sample`` gets a fresh database per test. ``tryton`` (SQLite) and ``tryton-pg`` (PostgreSQL)
are real trytond servers started once per session (tests/harness/tryton.py); each is reset to
the dataset before a test only when the test before it wrote (filed a return, created an
order), which costs ~1 s per writing test instead of ~1 s per test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from erp_backends.port import CallContext, ErpBackend
from erp_backends.sample import SampleBackend
from erp_backends.tryton import TrytonBackend
from erp_backends.tryton.rpc import TrytonSession
from tests.harness.tryton import TrytonServer
from tests.harness.tryton_fixtures import tryton_settings

BACKENDS = ["sample", "tryton", "tryton-pg"]


@pytest.fixture(scope="session")
def tryton_session() -> TrytonSession:
    """One Tryton login for the suite (it survives resets: a 401 after a reset logs in again)."""
    return TrytonSession()


@pytest.fixture(scope="session")
def tryton_pg_session() -> TrytonSession:
    """The same for the PostgreSQL-backed server (a login belongs to one server)."""
    return TrytonSession()


@asynccontextmanager
async def _adapter(server: TrytonServer, session: TrytonSession) -> AsyncIterator[TrytonBackend]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(20.0, connect=2.0)) as client:
        adapter = TrytonBackend(tryton_settings(server), client, session=session)
        yield adapter
        await adapter.aclose()


@pytest.fixture
async def tryton_backend(tryton: TrytonServer, tryton_session: TrytonSession) -> AsyncIterator[TrytonBackend]:
    async with _adapter(tryton, tryton_session) as adapter:
        yield adapter


@pytest.fixture
async def tryton_pg_backend(tryton_pg: TrytonServer, tryton_pg_session: TrytonSession) -> AsyncIterator[TrytonBackend]:
    async with _adapter(tryton_pg, tryton_pg_session) as adapter:
        yield adapter


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> ErpBackend:
    # Only the parametrized backend's fixture is set up: a sample test never starts Tryton.
    if request.param == "sample":
        sample: SampleBackend = request.getfixturevalue("sample")
        return sample
    if request.param == "tryton":
        tryton: TrytonBackend = request.getfixturevalue("tryton_backend")
        return tryton
    if request.param == "tryton-pg":
        tryton_pg: TrytonBackend = request.getfixturevalue("tryton_pg_backend")
        return tryton_pg
    raise AssertionError(request.param)  # pragma: no cover - each real ERP adds its branch


@pytest.fixture
def ctx() -> CallContext:
    return CallContext(correlation_id="conformance-suite")
