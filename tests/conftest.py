"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from erp_backends.dataset import Dataset, load_dataset
from erp_backends.sample import SampleBackend, SampleSettings
from gateway.app import create_app
from gateway.problems import PROBLEM_BASE
from gateway.settings import Settings


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    return load_dataset()


@pytest.fixture
def sample_path(tmp_path: Path) -> Path:
    return tmp_path / "sample-erp.sqlite"


@pytest.fixture
async def sample(sample_path: Path) -> AsyncIterator[SampleBackend]:
    backend = SampleBackend(SampleSettings(path=str(sample_path)))
    yield backend
    await backend.aclose()


@pytest.fixture
def client(sample_path: Path) -> Iterator[TestClient[Any]]:
    settings = Settings(sample=SampleSettings(path=str(sample_path)))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem of the given kind, with the correlation ID."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM_BASE + slug, body
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["correlationId"] == response.headers["x-request-id"]
    return body
