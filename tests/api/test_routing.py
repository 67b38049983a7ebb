"""Several backends at once (``gateway.routing``): calls routed per operation and per caller,
lookups that find an order only the old ERP holds, shadow reads compared field by field. Two
embedded sample ERPs, ``legacy`` and ``next``, seeded from the same dataset; the tests change
``next``'s own database as its back office would, and take either down by fault injection."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from erp_backends.port import ErpBackend
from gateway.app import create_app
from gateway.routing.settings import RoutingSettings, ShadowSettings
from gateway.settings import SampleBackendSettings, Settings, load_settings
from tests.conftest import Mint, assert_problem, with_dev_auth
from tests.harness.faults import Fault, FaultInjectingBackend

Faults = dict[str, Fault]


@pytest.fixture
def several(settings: Settings, tmp_path: Path) -> Callable[..., Settings]:
    def make(**routing: Any) -> Settings:
        return msgspec.structs.replace(
            settings,
            backends={
                "legacy": SampleBackendSettings(path=str(tmp_path / "legacy.sqlite")),
                "next": SampleBackendSettings(path=str(tmp_path / "next.sqlite")),
            },
            default_backend="legacy",
            routing=RoutingSettings(**routing),
        )

    return make


@pytest.fixture
def gateway(dev_key_path: Path, mint: Mint) -> Callable[..., Any]:
    @contextmanager
    def run(settings: Settings, faults: Faults, token: str | None = None) -> Iterator[TestClient[Any]]:
        def wrap(adapter: ErpBackend) -> ErpBackend:
            faults.setdefault(adapter.name, Fault())
            return FaultInjectingBackend(adapter, lambda: faults[adapter.name])

        app = create_app(with_dev_auth(settings, dev_key_path), wrap_adapter=wrap)
        with TestClient(app) as client:
            client.headers["Authorization"] = f"Bearer {token or mint()}"
            yield client

    return run


def _next_db(tmp_path: Path, *statements: str) -> None:
    """Change ``next``'s own data, as its back office would."""
    conn = sqlite3.connect(tmp_path / "next.sqlite")
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


def _drain(client: TestClient[Any]) -> None:
    shadow = client.app.state.runtime.erp.routed.shadow
    assert shadow is not None
    client.blocking_portal.call(shadow.drain)


def _shadow_counts(client: TestClient[Any]) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("erpgw_shadow_reads_total{"):
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(","))
            key = (labels["operation"].strip('"'), labels["outcome"].strip('"'))
            out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return out


_CART = {"currency": "EUR", "lines": [{"sku": "TEE-NVY-M", "quantity": 1, "unitPrice": "19.90"}]}


def test_each_operation_is_served_where_the_rules_say(several: Callable[..., Settings], gateway: Any) -> None:
    faults: Faults = {}
    settings = several(operations={"get_availability": "next", "check_prices": "next"})
    with gateway(settings, faults) as client:
        stock = client.get("/v1/availability/TEE-NVY-M")
        assert stock.headers["erp-backend"] == "next"
        assert (
            client.post("/v1/prices/check", json=_CART | {"lines": [{"sku": "TEE-NVY-M", "quantity": 1}]}).headers[
                "erp-backend"
            ]
            == "next"
        )
        assert client.post("/v1/orders/validate", json=_CART).headers["erp-backend"] == "legacy"
        assert client.get("/v1/orders/SO-1001").headers["erp-backend"] == "legacy"
        metrics = client.get("/metrics").text
        assert 'backend="next",operation="get_availability"' in metrics
        assert 'backend="legacy",operation="get_availability"' not in metrics

        # legacy down: only what is routed to it fails; the instance stays ready
        faults["legacy"] = Fault(mode="down")
        assert client.get("/v1/availability/TEE-WHT-L").status_code == 200
        assert_problem(client.post("/v1/orders/validate", json=_CART), 503, "erp-unavailable")
        assert_problem(client.get("/v1/orders/SO-1002"), 503, "erp-unavailable")
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        checks = {c["name"]: c for c in ready.json()["checks"]}
        assert not checks["backend:legacy"]["ok"]
        assert not checks["backend:legacy"]["required"]
        assert "get_availability" in checks["backend:next"]["detail"]


def test_a_caller_may_have_a_backend_of_its_own(several: Callable[..., Settings], gateway: Any, mint: Mint) -> None:
    settings = several(clients={"emea-shop": {"default": "next", "create_return": "legacy"}})
    with gateway(settings, {}, token=mint(client_id="emea-shop")) as client:
        assert client.get("/v1/availability/TEE-NVY-M").headers["erp-backend"] == "next"
    with gateway(settings, {}) as client:
        assert client.get("/v1/availability/TEE-NVY-M").headers["erp-backend"] == "legacy"
        # two backends serving: neither alone decides the instance's readiness
        checks = {c["name"]: c for c in client.get("/readyz").json()["checks"]}
        assert not checks["backend:next"]["required"]
        assert not checks["backend:legacy"]["required"]


def test_a_sales_channel_may_have_a_backend_of_its_own(
    several: Callable[..., Settings], gateway: Any, mint: Mint
) -> None:
    """The point-of-sale tills move to ``next`` first, whichever client id their tokens carry;
    a client's own rule still wins over its channel's."""
    routed = several(channels={"pos": {"get_availability": "next"}}, clients={"till-legacy": {"default": "legacy"}})
    settings = msgspec.structs.replace(routed, auth=msgspec.structs.replace(routed.auth, channel_claim="channel"))
    with gateway(settings, {}, token=mint(client_id="till-17", channel="POS")) as client:
        web = {"Authorization": f"Bearer {mint(client_id='web-shop', channel='web')}"}
        assert client.get("/v1/availability/TEE-NVY-M", headers=web).headers["erp-backend"] == "legacy"
        # legacy's copy is cached now; the till's reads (the hot path's case) still go to next
        assert client.get("/v1/availability/TEE-NVY-M").headers["erp-backend"] == "next"
        assert client.get("/v1/availability/TEE-NVY-M").headers["erp-backend"] == "next"
        prices = client.post("/v1/prices/check", json=_CART | {"lines": [{"sku": "TEE-NVY-M", "quantity": 1}]})
        assert prices.headers["erp-backend"] == "legacy"  # the channel's rule names one operation
    with gateway(settings, {}, token=mint(client_id="till-legacy", channel="pos")) as client:
        assert client.get("/v1/availability/TEE-NVY-M").headers["erp-backend"] == "legacy"
    with gateway(settings, {}, token=mint(client_id="till-17", channel=["pos"])) as client:
        assert_problem(client.get("/v1/availability/TEE-NVY-M"), 401, "unauthorized")  # a channel is a name
    with gateway(routed, {}, token=mint(client_id="till-17", channel=["pos"])) as client:
        # no channel claim configured: it is not read, and a token that worked before still works
        assert client.get("/v1/availability/TEE-NVY-M").headers["erp-backend"] == "legacy"


def test_a_lookup_finds_an_order_only_the_old_erp_holds(
    several: Callable[..., Settings], gateway: Any, tmp_path: Path
) -> None:
    faults: Faults = {}
    with gateway(several(lookup_order="next,legacy"), faults) as client:
        assert client.get("/v1/orders/SO-1001").headers["erp-backend"] == "next"
        _next_db(
            tmp_path,
            "DELETE FROM shipment_lines WHERE shipment_number IN"
            " (SELECT number FROM shipments WHERE order_number = 'SO-1002')",
            "DELETE FROM shipments WHERE order_number = 'SO-1002'",
            "DELETE FROM order_lines WHERE order_number = 'SO-1002'",
            "DELETE FROM orders WHERE number = 'SO-1002'",
        )
        client.post("/v1/admin/cache/invalidate", json={"orders": ["SO-1002"]})
        old = client.get("/v1/orders/SO-1002")
        assert old.status_code == 200, old.text
        assert old.headers["erp-backend"] == "legacy"
        by_ref = client.get("/v1/orders", params={"externalRef": "WC-5002"})
        assert [o["orderNumber"] for o in by_ref.json()["items"]] == ["SO-1002"]
        assert by_ref.headers["erp-backend"] == "legacy"
        assert_problem(client.get("/v1/orders/SO-9999"), 404, "order-not-found")
        # a return for the order only the old ERP holds is authorized there
        returned = client.post(
            "/v1/returns",
            json={"orderNumber": "SO-1002", "lines": [{"lineRef": "1", "quantity": 1, "reason": "damaged"}]},
            headers={"Idempotency-Key": "rma-so-1002"},
        )
        assert returned.status_code == 201, returned.text
        assert returned.headers["erp-backend"] == "legacy"
        # the new ERP down and the old one without it: not a 404 (it may be in the one that is down)
        faults["next"] = Fault(mode="down")
        assert_problem(client.get("/v1/orders/SO-9998"), 503, "erp-unavailable")
        assert client.get("/v1/orders/SO-1003").headers["erp-backend"] == "legacy"


def test_shadow_reads_match_then_name_exactly_what_changed(
    several: Callable[..., Settings], gateway: Any, tmp_path: Path
) -> None:
    shadow = ShadowSettings(backend="next", sample_rate=1.0, path=str(tmp_path / "shadow.sqlite"))
    with gateway(several(shadow=shadow), {}) as client:
        skus = ["TEE-NVY-M", "MUG-SND", "HOOD-BLK-M"]
        for sku in skus:
            assert client.get(f"/v1/availability/{sku}").headers["erp-backend"] == "legacy"
        client.post(
            "/v1/prices/check",
            json={"currency": "EUR", "customer": "C-1001", "lines": [{"sku": s, "quantity": 2} for s in skus]},
        )
        client.post("/v1/orders/validate", json=_CART)
        client.get("/v1/orders/SO-1002")
        _drain(client)
        counts = _shadow_counts(client)
        assert counts.get(("get_availability", "match")) == 3
        assert counts.get(("check_prices", "match")) == 1
        assert counts.get(("get_order", "match")) == 1
        assert not any(outcome == "mismatch" for _, outcome in counts)
        assert client.get("/v1/admin/shadow/mismatches").json() == {"items": []}
        # a cached read the hot path would answer is shadowed too when sampled (the route answers it)
        assert client.get("/v1/availability/TEE-NVY-M").headers["cache-status"].startswith("erp-gateway; hit")
        _drain(client)
        assert _shadow_counts(client).get(("get_availability", "match")) == 4

        _next_db(
            tmp_path,
            "UPDATE products SET list_price = '21.90' WHERE sku = 'MUG-SND'",
            "UPDATE stock SET on_hand = on_hand - 2 WHERE sku = 'HOOD-BLK-M' AND warehouse = 'EAST'",
        )
        for sku in skus:
            client.get(f"/v1/availability/{sku}", headers={"Cache-Control": "no-cache"})
        client.post("/v1/admin/cache/invalidate", json={"skus": skus})
        for sku in skus:
            client.get(f"/v1/availability/{sku}")
        client.post("/v1/prices/check", json={"currency": "EUR", "lines": [{"sku": "MUG-SND", "quantity": 1}]})
        _drain(client)
        report = client.get("/v1/admin/shadow/mismatches").json()["items"]
        named = sorted(
            {
                (m["operation"], m["subject"], d["path"], str(d["primary"]), str(d["shadow"]))
                for m in report
                for d in m["differences"]
            }
        )
        print(named)
        stock = [n for n in named if n[0] == "get_availability"]
        assert ("get_availability", "skus=HOOD-BLK-M", "items[sku=HOOD-BLK-M].onHand") in {n[:3] for n in stock}
        assert ("get_availability", "skus=HOOD-BLK-M", "items[sku=HOOD-BLK-M].warehouses[warehouse=EAST].onHand") in {
            n[:3] for n in stock
        }
        assert {n[1] for n in named if n[0] == "get_availability"} == {"skus=HOOD-BLK-M"}
        prices = [n for n in named if n[0] == "check_prices"]
        assert prices
        assert all("MUG-SND" in n[1] for n in prices)
        assert ("check_prices", "skus=MUG-SND", "lines[sku=MUG-SND].listPrice", "14.00", "21.90") in named


def test_a_shadow_down_or_slow_never_reaches_the_caller(
    several: Callable[..., Settings], gateway: Any, tmp_path: Path
) -> None:
    faults: Faults = {}
    shadow = ShadowSettings(backend="next", sample_rate=1.0, max_in_flight=2, path=str(tmp_path / "shadow.sqlite"))
    settings = several(shadow=shadow)
    settings = msgspec.structs.replace(settings, breaker=msgspec.structs.replace(settings.breaker, fail_max=3))
    with gateway(settings, faults) as client:
        faults["next"] = Fault(mode="failing")
        for sku in ["TEE-NVY-M", "MUG-SND", "HOOD-BLK-M", "TEE-WHT-L", "LAMP-WHT", "RUG-SND"]:
            answer = client.get(f"/v1/availability/{sku}")
            assert answer.status_code == 200, answer.text
            assert answer.headers["erp-backend"] == "legacy"
            _drain(client)
        counts = _shadow_counts(client)
        assert counts.get(("get_availability", "error")) == 6
        checks = {c["name"]: c for c in client.get("/readyz").json()["checks"]}
        # the shadow's own breaker: live calls routed to next keep theirs closed
        assert checks["breaker:next_shadow:reads"]["detail"] == "open"
        assert checks["breaker:next:reads"]["detail"] == "closed"
        for sku in ["CHAIR-OAK", "CANDLE-FIG", "SOCK-ANT-43-46"]:
            assert client.get(f"/v1/availability/{sku}").status_code == 200
            _drain(client)
        assert checks["breaker:legacy:reads"]["detail"] == "closed"

        assert _shadow_counts(client).get(("get_availability", "error")) == 9  # refused by its open breaker

    faults = {"next": Fault(mode="slow", delay_ms=60_000)}
    with gateway(settings, faults) as client:
        # slow: the caller's answer comes before the shadow's; beyond max_in_flight, skipped
        shadow_of = client.app.state.runtime.erp.routed.shadow
        for sku in ["CHAIR-OAK", "CANDLE-FIG", "SOCK-ANT-43-46"]:
            assert client.get(f"/v1/availability/{sku}").status_code == 200
            assert shadow_of.in_flight <= 2
        assert shadow_of.in_flight == 2  # still waiting for the slow shadow
        assert _shadow_counts(client) == {("get_availability", "skipped"): 1}


def test_routing_rules_name_what_exists() -> None:
    from gateway.settings import SettingsError

    env = {
        "ERPGW_BACKENDS__LEGACY__KIND": "sample",
        "ERPGW_BACKENDS__NEXT__KIND": "sample",
        "ERPGW_DEFAULT_BACKEND": "legacy",
    }
    assert load_settings({**env, "ERPGW_ROUTING__OPERATIONS__GET_AVAILABILITY": "next"}).routing.operations == {
        "get_availability": "next"
    }
    with pytest.raises(SettingsError, match=r"ERPGW_ROUTING__OPERATIONS__GET_AVAILABILITY.*'nxt' is not a configured"):
        load_settings({**env, "ERPGW_ROUTING__OPERATIONS__GET_AVAILABILITY": "nxt"})
    with pytest.raises(SettingsError, match=r"ERPGW_ROUTING__SHADOW__OPERATIONS.*create_order"):
        load_settings(
            {**env, "ERPGW_ROUTING__SHADOW__BACKEND": "next", "ERPGW_ROUTING__SHADOW__OPERATIONS": "create_order"}
        )
    with pytest.raises(SettingsError, match=r"ERPGW_AUTH__CHANNEL_CLAIM.*the token claim naming the sales channel"):
        load_settings({**env, "ERPGW_ROUTING__CHANNELS__POS__DEFAULT": "next"})
    env["ERPGW_AUTH__CHANNEL_CLAIM"] = "channel"
    assert load_settings({**env, "ERPGW_ROUTING__CHANNELS__POS__DEFAULT": "next"}).routing.channels == {
        "pos": {"default": "next"}
    }
    with pytest.raises(SettingsError, match=r"ERPGW_ROUTING__CHANNELS__POS__CREATE_ORDER.*where intake judged"):
        load_settings({**env, "ERPGW_ROUTING__CHANNELS__POS__CREATE_ORDER": "next"})
    with pytest.raises(SettingsError, match="ERPGW_ROUTING__SHADOW__SAMPLE_RATE"):
        load_settings({**env, "ERPGW_ROUTING__SHADOW__BACKEND": "next", "ERPGW_ROUTING__SHADOW__SAMPLE_RATE": "1.5"})
