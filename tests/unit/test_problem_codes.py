"""Problem slugs carried by exceptions are in the catalog, checked at start-up."""

from __future__ import annotations

import pytest
from litestar import get
from litestar.exceptions import HTTPException
from litestar.testing import create_test_client

from gateway.problems import PROBLEMS, check_problem_codes, exception_handlers
from gateway.quota_middleware import QuotaStoreDown


def test_every_carried_slug_is_in_the_catalog() -> None:
    check_problem_codes()


def test_a_slug_without_a_catalog_entry_fails_the_start_up() -> None:
    class Unlisted(Exception):  # not under ErpError: the other tests' start-ups must not see it
        code = "no-such-problem"

    class Listed(Unlisted):
        code = "erp-busy"

    with pytest.raises(LookupError, match="no-such-problem") as caught:
        check_problem_codes(Unlisted)
    assert "erp-busy" not in str(caught.value)


@pytest.mark.parametrize(
    ("exc", "slug"),
    [
        (QuotaStoreDown(detail="redis down"), "quota-unavailable"),
        (HTTPException(status_code=503), "service-unavailable"),
    ],
)
def test_a_bare_503_is_not_a_quota_problem(exc: HTTPException, slug: str) -> None:
    @get("/fail", sync_to_thread=False)
    def fail() -> None:
        raise exc

    with create_test_client([fail], exception_handlers=exception_handlers) as client:
        response = client.get("/fail")
    assert response.status_code == 503
    assert response.json()["type"].endswith("/" + slug)
    assert slug in PROBLEMS
