"""The hot path (``gateway.hot_path``): a cached single-SKU GET answered outside Litestar's
router must be indistinguishable from the router's answer, and must hand every request it
cannot answer for certain to the router, which then answers as it always does."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient
from litestar.types import ASGIApp, Receive, Scope, Send

from erp_backends.port import CallContext
from erp_backends.sample import SampleSettings
from gateway.hot_path import HotPath
from gateway.settings import Settings
from policies.quotas import QuotaClass, QuotaSettings
from tests.conftest import AppClient, Mint, assert_problem

PATH = "/v1/availability/LAMP-WHT"


class Router:
    """Counts the requests the hot path hands on to Litestar's router."""

    def __init__(self, hot: HotPath) -> None:
        self.app: ASGIApp = hot.app
        self.calls = 0
        hot.app = self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await self.app(scope, receive, send)


@contextmanager
def gateway(
    app_client: AppClient, tmp_path: Path, name: str, token: str | None = None, **http: Any
) -> Iterator[tuple[TestClient[Any], Router | None]]:
    settings = Settings(sample=SampleSettings(path=str(tmp_path / f"{name}.sqlite")))
    settings = msgspec.structs.replace(settings, http=msgspec.structs.replace(settings.http, **http))
    with app_client(settings, token=token) as client:
        handler = client.app.asgi_handler.app  # inside the request telemetry
        yield client, Router(handler) if isinstance(handler, HotPath) else None


def test_the_hot_answer_is_the_routers_answer(app_client: AppClient, tmp_path: Path) -> None:
    headers = {"X-Request-ID": "checkout-42"}
    with (
        gateway(app_client, tmp_path, "hot") as (hot, router),
        gateway(app_client, tmp_path, "routed", hot_path=False) as (routed, _),
    ):
        assert router is not None
        first = hot.get(PATH, headers=headers)  # a miss: the router fetches, caches, verifies the token
        assert first.status_code == 200
        assert router.calls == 1
        answers = []
        for client in (hot, routed):
            client.get(PATH, headers=headers)
            answers.append(client.get(PATH, headers=headers))
        assert router.calls == 1  # both cached answers came from the hot path

    fast, slow = answers
    assert fast.status_code == slow.status_code == 200
    fast_body, slow_body = fast.json(), slow.json()
    assert fast_body.pop("asOf").endswith("Z")  # when each app's ERP answered
    assert slow_body.pop("asOf").endswith("Z")
    assert fast_body == slow_body
    assert fast_body["freshness"] == "cached"
    assert list(fast.headers.keys()) == list(slow.headers.keys())
    for name, value in slow.headers.items():
        if name not in ("date", "ratelimit", "cache-status"):  # seconds left: may differ by one
            assert fast.headers[name] == value, name
    assert fast.headers["x-request-id"] == "checkout-42"
    assert fast.headers["cache-status"].startswith("erp-gateway; hit; ttl=")
    assert fast.headers["ratelimit"].startswith('"default";r=5997;t=')


def test_what_it_cannot_answer_goes_to_the_router(app_client: AppClient, tmp_path: Path, mint: Mint) -> None:
    with gateway(app_client, tmp_path, "declines") as (client, router):
        assert router is not None
        client.get(PATH)
        client.get("/v1/availability/NO-SUCH-SKU")  # unknown SKUs are cached as unknown
        calls = router.calls

        warehouse = client.get(PATH, params={"warehouse": "WEST"})
        assert [w["warehouse"] for w in warehouse.json()["warehouses"]] == ["WEST"]
        assert_problem(client.get("/v1/availability/NO-SUCH-SKU"), 404, "sku-not-found")
        assert_problem(client.get(PATH, headers={"Authorization": "Bearer nope"}), 401, "unauthorized")
        # a valid token without the route's scope: refused again once it is in the token cache
        prices_only = {"Authorization": f"Bearer {mint('prices:read')}"}
        assert_problem(client.get(PATH, headers=prices_only), 403, "forbidden")
        assert_problem(client.get(PATH, headers=prices_only), 403, "forbidden")
        assert_problem(client.get(PATH, headers={"X-Padding": "x" * 17_000}), 431, "headers-too-large")
        assert router.calls == calls + 6  # every one of them

        assert client.get(PATH).json()["freshness"] == "cached"
        assert router.calls == calls + 6


def test_two_authorization_headers_are_left_to_the_router(app_client: AppClient, tmp_path: Path) -> None:
    # The test client joins repeated headers into one, as HTTP allows; uvicorn passes both on.
    with gateway(app_client, tmp_path, "doubled") as (client, _):
        client.get(PATH)  # the token and the SKU are cached now
        hot = client.app.asgi_handler.app
        authorization = client.headers["Authorization"].encode()
        headers = [(b"host", b"testserver"), (b"authorization", authorization)]
        scope: dict[str, Any] = {"type": "http", "method": "GET", "path": PATH, "query_string": b"", "state": {}}
        # each in its own context, as the server runs requests (the cache notes its hit there)
        doubled = {**scope, "headers": [*headers, (b"authorization", authorization)]}
        assert contextvars.copy_context().run(hot._answer, doubled) is None
        once = {**scope, "headers": headers}
        assert contextvars.copy_context().run(hot._answer, once) is not None  # the same request, once


def test_the_quota_holds_on_the_hot_path(app_client: AppClient, tmp_path: Path, mint: Mint) -> None:
    settings = Settings(
        sample=SampleSettings(path=str(tmp_path / "quota.sqlite")),
        # a day-long window: the test never straddles two windows
        quotas=QuotaSettings(classes={"default": QuotaClass(requests=4, window_seconds=86_400)}),
    )
    with app_client(settings, token=mint(client_id="till-7")) as client:
        statuses = [client.get(PATH).status_code for _ in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]


@pytest.mark.parametrize(
    ("path_sku", "status", "slug"),
    [("batch", 405, "method-not-allowed"), ("x" * 65, 400, "validation-failed")],
)
def test_a_cached_key_the_route_would_refuse_is_left_to_the_router(
    app_client: AppClient, tmp_path: Path, path_sku: str, status: int, slug: str
) -> None:
    """Whatever the cache holds, a path the router refuses is refused: ``batch`` belongs to the
    POST-only batch route, and a SKU the route's rule refuses is a 400."""
    with gateway(app_client, tmp_path, "refused") as (client, router):
        assert router is not None
        client.get(PATH)
        cache = client.app.state.runtime.erp.default.cache
        ctx = CallContext(correlation_id="test")

        async def plant() -> None:  # as if the ERP had answered for that key
            (item,) = (await cache.get_availability(["LAMP-WHT"], None, ctx)).items
            await cache.store.put_many(
                [(cache.keys.availability(path_sku), msgspec.structs.replace(item, sku=path_sku), 60.0)],
                read_at=time.time(),
            )

        client.blocking_portal.call(plant)
        calls = router.calls
        assert_problem(client.get(f"/v1/availability/{path_sku}"), status, slug)
        assert router.calls == calls + 1
