"""HTTP behaviour of order intake on the embedded sample ERP: POST /v1/orders, the intake's
status, holds against availability, posting, and the operators' routes."""

from __future__ import annotations

import copy
import re
import time
import uuid
from typing import Any

from litestar.testing import TestClient

from gateway.bootstrap import Runtime, build_poster
from gateway.settings import Settings
from tests.conftest import AppClient, Mint, assert_problem

ADDRESS = {"name": "Jo Buyer", "street": "Hauptstrasse 1", "postalCode": "10115", "city": "Berlin", "country": "DE"}
CONTACT = {"name": "Jo Buyer", "email": "jo@example.com"}


def _order(*lines: tuple[str, int, str], ref: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "externalRef": ref or f"WC-{uuid.uuid4().hex[:10]}",
        "currency": "EUR",
        "lines": [{"sku": sku, "quantity": quantity, "unitPrice": price} for sku, quantity, price in lines],
        "shippingAddress": ADDRESS,
        "contact": CONTACT,
        **extra,
    }


def _submit(client: TestClient[Any], order: dict[str, Any], key: str | None = None) -> Any:
    return client.post("/v1/orders", json=order, headers={"Idempotency-Key": key or str(uuid.uuid4())})


def _runtime(client: TestClient[Any]) -> Runtime:
    runtime: Runtime = client.app.state.runtime
    return runtime


def _post_due(client: TestClient[Any]) -> int:
    runtime = _runtime(client)
    assert runtime.intake is not None
    telemetry = client.app.state.telemetry
    poster = build_poster(runtime.settings, runtime.erp, runtime.intake.store, runtime.intake.holds, telemetry)
    return int(client.blocking_portal.call(poster.post_due))


def _reject_next(client: TestClient[Any], reason: str) -> None:
    """The next due intake refused as the ERP refuses one (a product taken off sale after the
    order was accepted), through the store steps the poster takes."""
    intake = _runtime(client).intake
    assert intake is not None
    store = intake.store

    async def reject() -> None:
        claimed = await store.claim(time.time(), 30, uuid.uuid4().hex)
        assert claimed is not None
        await store.give_up(claimed.record.intake_id, claimed.record.attempts, "rejected", reason, time.time())
        for hold in claimed.record.holds:
            intake.holds.forget(hold.sku)

    client.blocking_portal.call(reject)


def _atp(client: TestClient[Any], sku: str) -> int:
    return int(client.get(f"/v1/availability/{sku}").json()["availableToPromise"])


def test_an_order_is_accepted_held_and_posted_once(client: TestClient[Any]) -> None:
    order = _order(("TEE-WHT-L", 2, "19.90"))
    key = str(uuid.uuid4())
    before = _atp(client, "TEE-WHT-L")
    accepted = _submit(client, order, key)
    assert accepted.status_code == 202, accepted.text
    intake = accepted.json()
    assert accepted.headers["location"] == f"/v1/order-intakes/{intake['intakeId']}"
    assert "idempotent-replayed" not in accepted.headers
    assert intake["status"] == "accepted"
    assert intake["held"] == [{"sku": "TEE-WHT-L", "warehouse": "WEST", "quantity": 2}]
    assert [h["status"] for h in intake["history"]] == ["accepted"]
    assert "contact" not in intake
    assert "shippingAddress" not in intake

    again = _submit(client, order, key)
    assert again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["intakeId"] == intake["intakeId"]
    assert _submit(client, order, str(uuid.uuid4())).json()["type"].endswith("/order-already-submitted")

    # the hold is off availableToPromise at once, in the single and the batch answer
    assert _atp(client, "TEE-WHT-L") == before - 2
    batch = client.post("/v1/availability/batch", json={"skus": ["TEE-WHT-L"], "warehouses": ["WEST"]}).json()
    assert batch["items"][0]["availableToPromise"] == before - 2
    assert _post_due(client) == 1
    # posted: the ERP commits the units now, and they are not subtracted twice
    assert _atp(client, "TEE-WHT-L") == before - 2
    posted = client.get(accepted.headers["location"]).json()
    assert posted["status"] == "posted"
    assert posted["attempts"] == 1
    assert [h["status"] for h in posted["history"]] == ["accepted", "posting", "posted"]
    found = client.get("/v1/orders", params={"externalRef": order["externalRef"]}).json()["items"]
    assert [o["orderNumber"] for o in found] == [posted["orderNumber"]]
    assert [(line["sku"], line["quantity"], line["unitPrice"]) for line in found[0]["lines"]] == [
        ("TEE-WHT-L", 2, "19.90")
    ]
    assert _post_due(client) == 0  # nothing left to post: posted once
    metrics = client.get("/metrics").text
    assert 'erpgw_intake_posts_total{outcome="posted"} 1.0' in metrics
    assert _submit(client, order, key).json()["orderNumber"] == posted["orderNumber"]


def test_an_order_id_is_one_storefronts_own(client: TestClient[Any], mint: Mint) -> None:
    """Two storefronts (two clients) may both have order "WC-1001": each is accepted, and the
    second never learns of the first's intake; within one client it is already submitted."""
    order = _order(("TEE-WHT-L", 1, "19.90"))
    north = _submit(client, order)
    assert north.status_code == 202, north.text
    client.headers["Authorization"] = f"Bearer {mint('orders:write', client_id='south-shop')}"
    south = _submit(client, order)
    assert south.status_code == 202, south.text
    assert south.json()["intakeId"] != north.json()["intakeId"]
    again = _submit(client, order)
    assert_problem(again, 409, "order-already-submitted")
    assert again.json()["existing"] == south.headers["location"]
    assert north.json()["intakeId"] not in again.text


def test_stock_is_promised_once_and_a_short_order_holds_nothing(client: TestClient[Any]) -> None:
    # TEE-WHT-L: 3 units, all in WEST
    first = _submit(client, _order(("TEE-WHT-L", 2, "19.90")))
    assert first.status_code == 202
    short = _submit(client, _order(("MUG-SND", 1, "14.00"), ("TEE-WHT-L", 2, "19.90")))
    body = assert_problem(short, 409, "insufficient-stock")
    assert body["shortLines"] == [{"line": 1, "sku": "TEE-WHT-L", "requested": 2, "available": 1}]
    # the mug of the refused order was not held: one unit of TEE-WHT-L and every mug are still there
    last = _submit(client, _order(("TEE-WHT-L", 1, "19.90")))
    assert last.status_code == 202, last.text
    assert assert_problem(_submit(client, _order(("TEE-WHT-L", 1, "19.90"))), 409, "insufficient-stock")[
        "shortLines"
    ] == [{"line": 0, "sku": "TEE-WHT-L", "requested": 1, "available": 0}]


def test_validate_order_counts_the_units_accepted_orders_hold(client: TestClient[Any]) -> None:
    """The ERP still has 3 of TEE-WHT-L, but an accepted order holds 2: a cart of 2 is short
    before checkout (available 1), a cart of 1 is valid; the second line of a SKU sees what the
    first took."""

    def validate(*lines: tuple[str, int, str]) -> dict[str, Any]:
        cart = {"currency": "EUR", "lines": [{"sku": s, "quantity": q, "unitPrice": p} for s, q, p in lines]}
        answer = client.post("/v1/orders/validate", json=cart)
        assert answer.status_code == 200, answer.text
        verdict: dict[str, Any] = answer.json()
        return verdict

    assert validate(("TEE-WHT-L", 2, "19.90"))["valid"] is True
    assert _submit(client, _order(("TEE-WHT-L", 2, "19.90"))).status_code == 202
    short = validate(("TEE-WHT-L", 2, "19.90"))
    assert short["valid"] is False
    assert [(p["line"], p["code"], p["available"]) for p in short["problems"]] == [(0, "insufficient_stock", 1)]
    assert validate(("TEE-WHT-L", 1, "19.90"))["valid"] is True
    split = validate(("TEE-WHT-L", 1, "19.90"), ("MUG-SND", 1, "14.00"), ("TEE-WHT-L", 1, "19.90"))
    assert [(p["line"], p["code"], p["available"]) for p in split["problems"]] == [(2, "insufficient_stock", 0)]
    # beyond the ERP's own stock: the ERP's problem, with what the holds leave
    over = validate(("TEE-WHT-L", 5, "19.90"))
    assert [(p["line"], p["code"], p["available"]) for p in over["problems"]] == [(0, "insufficient_stock", 1)]


def test_a_line_is_split_over_warehouses_in_the_erps_order(client: TestClient[Any]) -> None:
    # HOOD-BLK-M: EAST 12, WEST 3, minus what open orders commit
    stock = client.get("/v1/availability/HOOD-BLK-M").json()
    per = {w["warehouse"]: w["availableToPromise"] for w in stock["warehouses"]}
    wanted = per["EAST"] + 1
    accepted = _submit(client, _order(("HOOD-BLK-M", wanted, "59.00")))
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["held"] == [
        {"sku": "HOOD-BLK-M", "warehouse": "EAST", "quantity": per["EAST"]},
        {"sku": "HOOD-BLK-M", "warehouse": "WEST", "quantity": 1},
    ]
    only_west = _submit(
        client,
        _order(("HOOD-BLK-M", per["WEST"], "59.00"))
        | {"lines": [{"sku": "HOOD-BLK-M", "quantity": per["WEST"], "unitPrice": "59.00", "warehouse": "WEST"}]},
    )
    assert assert_problem(only_west, 409, "insufficient-stock")["shortLines"][0]["available"] == per["WEST"] - 1


def test_refusals_are_problems_and_hold_nothing(client: TestClient[Any]) -> None:
    changed = assert_problem(_submit(client, _order(("MUG-SND", 1, "13.00"))), 409, "price-changed")
    assert changed["changedLines"] == [
        {"line": 0, "sku": "MUG-SND", "seenUnitPrice": "13.00", "currentUnitPrice": "14.00"}
    ]
    unknown = assert_problem(_submit(client, _order(("NOPE-1", 1, "1.00"))), 422, "unknown-sku")
    assert unknown["errors"][0]["field"] == "lines[0].sku"
    bad_wh = _order(("MUG-SND", 1, "14.00"))
    bad_wh["lines"][0]["warehouse"] = "NORTH"
    assert_problem(_submit(client, bad_wh), 422, "unknown-warehouse")
    key = str(uuid.uuid4())
    assert _submit(client, _order(("MUG-SND", 1, "14.00")), key).status_code == 202
    assert_problem(_submit(client, _order(("MUG-SND", 2, "14.00")), key), 422, "idempotency-key-reused")
    missing_key = client.post("/v1/orders", json=_order(("MUG-SND", 1, "14.00")))
    assert_problem(missing_key, 400, "validation-failed")
    wrong = copy.deepcopy(_order(("MUG-SND", 1, "14.00")))
    wrong["lines"][0]["quantity"] = "1"  # no coercion
    assert_problem(_submit(client, wrong), 400, "validation-failed")
    wrong = _order(("MUG-SND", 1, "14.00"))
    wrong["contact"] = {"name": "x", "email": "not-an-email"}
    assert_problem(_submit(client, wrong), 400, "validation-failed")
    assert_problem(client.get("/v1/order-intakes/in_00000000000000000000000000"), 404, "intake-not-found")
    assert_problem(client.get("/v1/order-intakes/SO-1001"), 400, "validation-failed")


def _erp_calls(client: TestClient[Any], operation: str) -> float:
    """ERP calls made so far for ``operation``, from the gateway's own metrics."""
    pattern = re.compile(
        rf'^erpgw_erp_call_duration_seconds_count\{{[^}}]*operation="{operation}"[^}}]*\}} (\S+)$', re.M
    )
    return sum(float(found) for found in pattern.findall(client.get("/metrics").text))


def test_a_sku_not_for_sale_is_refused_at_intake_and_the_erp_asked_once(client: TestClient[Any]) -> None:
    """MUG-SLT is not for sale: 422 ``not-salable`` naming its line, nothing held; what the ERP
    said is believed for a while, so the next orders ask it nothing more."""
    before = _atp(client, "MUG-SND")
    asked = _erp_calls(client, "validate_order")
    refused = assert_problem(
        _submit(client, _order(("MUG-SND", 1, "14.00"), ("MUG-SLT", 1, "14.00"))), 422, "not-salable"
    )
    assert refused["errors"][0]["field"] == "lines[1].sku"
    assert _atp(client, "MUG-SND") == before
    assert_problem(_submit(client, _order(("MUG-SLT", 2, "14.00"))), 422, "not-salable")
    for _ in range(3):
        assert _submit(client, _order(("MUG-SND", 1, "14.00"))).status_code == 202
    assert _erp_calls(client, "validate_order") == asked + 1  # both SKUs learned in one call
    assert _atp(client, "MUG-SND") == before - 3


def test_a_tolerance_accepts_a_small_price_difference(settings: Settings, app_client: AppClient) -> None:
    from decimal import Decimal

    import msgspec

    tolerant = msgspec.structs.replace(
        settings, intake=msgspec.structs.replace(settings.intake, price_tolerance=Decimal("0.05"))
    )
    with app_client(tolerant) as client:
        assert _submit(client, _order(("MUG-SND", 1, "13.96"))).status_code == 202
        assert_problem(_submit(client, _order(("MUG-SND", 1, "13.90"))), 409, "price-changed")


def test_scopes(client: TestClient[Any], mint: Mint) -> None:
    order = _order(("MUG-SND", 1, "14.00"))
    client.headers["Authorization"] = f"Bearer {mint('availability:read')}"
    assert_problem(_submit(client, order), 403, "forbidden")
    client.headers["Authorization"] = f"Bearer {mint('orders:write')}"
    accepted = _submit(client, order)
    assert accepted.status_code == 202
    client.headers["Authorization"] = f"Bearer {mint('orders:read')}"
    assert client.get(accepted.headers["location"]).status_code == 200
    assert_problem(_submit(client, _order(("MUG-SND", 1, "14.00"))), 403, "forbidden")
    assert_problem(client.get("/v1/admin/order-intakes"), 403, "forbidden")
    client.headers["Authorization"] = f"Bearer {mint('prices:read')}"
    assert_problem(client.get(accepted.headers["location"]), 403, "forbidden")


def test_operators_cancel_replay_and_list(client: TestClient[Any]) -> None:
    before = _atp(client, "BOTTLE-STL")
    accepted = _submit(client, _order(("BOTTLE-STL", 2, "32.00"))).json()
    assert _atp(client, "BOTTLE-STL") == before - 2
    cancelled = client.post(f"/v1/admin/order-intakes/{accepted['intakeId']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    twice = client.post(f"/v1/admin/order-intakes/{accepted['intakeId']}/cancel")  # as it is: released once
    assert twice.status_code == 200
    assert twice.json()["status"] == "cancelled"
    assert_problem(client.post(f"/v1/admin/order-intakes/{accepted['intakeId']}/replay"), 409, "intake-not-changeable")
    assert _post_due(client) == 0  # a cancelled intake is never posted
    assert _atp(client, "BOTTLE-STL") == before
    # its two units are free again: an order for all that is left is accepted
    everything = _submit(client, _order(("BOTTLE-STL", before, "32.00")))
    assert everything.status_code == 202, everything.text
    listed = client.get("/v1/admin/order-intakes", params={"status": "cancelled"}).json()["items"]
    assert [i["intakeId"] for i in listed] == [accepted["intakeId"]]
    newest = client.get("/v1/admin/order-intakes", params={"limit": 1}).json()["items"]
    assert [i["intakeId"] for i in newest] == [everything.json()["intakeId"]]


def test_with_the_store_down_intake_is_refused_and_reads_go_on(settings: Settings, app_client: AppClient) -> None:
    """Never accepted unrecorded: Redis (the intake store) unreachable is a 503 with Retry-After."""
    import msgspec

    from gateway.shared_state import RedisSettings
    from tests.harness.gateway_process import free_port

    nowhere = RedisSettings(url=f"redis://127.0.0.1:{free_port()}", timeout_seconds=0.2)
    with app_client(msgspec.structs.replace(settings, redis=nowhere)) as client:
        refused = _submit(client, _order(("MUG-SND", 1, "14.00")))
        assert_problem(refused, 503, "intake-unavailable")
        assert int(refused.headers["retry-after"]) >= 1
        assert client.get("/v1/availability/MUG-SND").status_code == 200
        ready = client.get("/readyz")
        assert (ready.status_code, ready.json()["status"]) == (200, "degraded")
        (store,) = [c for c in ready.json()["checks"] if c["name"] == "intake-store"]
        assert (store["ok"], store["required"]) == (False, False)
        assert_problem(client.get("/v1/order-intakes/in_00000000000000000000000000"), 503, "intake-unavailable")


def test_a_replay_is_judged_on_the_stock_now(client: TestClient[Any]) -> None:
    """Rejected by the ERP, its units given back and promised to another order: replaying it is
    a 409 insufficient-stock, not the same units held twice."""
    available = _atp(client, "MUG-SND")
    first = _submit(client, _order(("MUG-SND", available, "14.00"))).json()
    _reject_next(client, "not-salable: SKU 'MUG-SND' is not for sale (lines[0].sku)")
    rejected = client.get(f"/v1/order-intakes/{first['intakeId']}").json()
    assert rejected["status"] == "rejected"
    assert rejected["lastError"].startswith("not-salable")
    assert _atp(client, "MUG-SND") == available
    assert _submit(client, _order(("MUG-SND", available, "14.00"))).status_code == 202
    refused = client.post(f"/v1/admin/order-intakes/{first['intakeId']}/replay")
    assert assert_problem(refused, 409, "insufficient-stock")["shortLines"][0]["available"] == 0
    assert client.get(f"/v1/order-intakes/{first['intakeId']}").json()["status"] == "rejected"


def test_with_intake_switched_off_its_routes_say_so(settings: Settings, app_client: AppClient) -> None:
    import msgspec

    off = msgspec.structs.replace(settings, intake=msgspec.structs.replace(settings.intake, enabled=False))
    with app_client(off) as client:
        body = assert_problem(_submit(client, _order(("MUG-SND", 1, "14.00"))), 503, "service-unavailable")
        assert "switched off" in body["detail"]
        assert client.get("/v1/availability/MUG-SND").status_code == 200
