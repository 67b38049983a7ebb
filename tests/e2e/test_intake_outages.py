"""Order intake through ERP outages, end to end: the real gateway under gunicorn (2 workers) on a
real Tryton server, a real Redis where the workers share cache, breakers and intake, and
``erp-gateway worker`` as a process of its own where posting is not left to the gateway.

What each test proves, by counting (ERP documents in Tryton itself, over its JSON-RPC; ERP calls
in the calls log every process appends to, ``tests/harness/faults.py``, no fault switched on):

1. Tryton stopped for 60 s while 200 orders arrive (distinct keys and references, one unit each
   of five well-stocked SKUs whose stock and guest prices were read first, as a storefront
   does, so the cache holds them): every one is answered 202 ``accepted`` with its units held,
   judged on the stock read within ``ERPGW_INTAKE__MAX_STOCK_AGE_SECONDS`` and the cached prices
   (stale-if-error). Designed otherwise, none expected here: 409 ``insufficient-stock`` (the
   held units exceed the stock last read), 503 ``erp-unavailable`` (no stock read within that
   age, no cached price), 503 ``intake-unavailable`` (the intake store cannot record it).
   Nothing is posted or given up while Tryton is down; once it is back each order is posted
   exactly once: one confirmed sale per reference, its number on the intake and answered by
   ``GET /v1/orders?externalRef=``. Tryton is not flooded: while it is down, the create_order
   calls that reach the adapter stay within what the write breaker lets through (the failures
   that open it, then one trial per reset timeout, per process) and the attempts it refuses
   within the posts claimed beside a trial; once it is back, about one call per order, and no
   order spends more than 2 attempts to be posted.
2. The separate posting worker SIGKILLed mid-batch of 100 (some posted, some in flight): a new
   worker posts the rest, and the ones the dead worker had in flight once their lease ran out
   (``ERPGW_INTAKE__LEASE_SECONDS`` 15, longer than the write timeout of 10, as the settings
   check insists); its sale found by the key, or made: one confirmed sale per reference, none
   missing. The new worker exits 0 on SIGTERM.
3. A poison order, for MUG-SLT: for sale when the gateway accepts it, taken off sale in Tryton
   (through its RPC, as a back office would) before the separate posting worker starts:
   ``rejected`` after one attempt with Tryton's reason in ``lastError``, its hold released (the
   stock it had before, asked on new connections, so of either worker); a new order for it is
   now refused at once (422 ``not-salable``, once the gateway's belief has run out); made
   salable again and replayed twice through the operators' route, it is posted once, and its
   units are subtracted once.

Seen on a shared 2-core machine over two runs (``-s`` prints them): 1. 200 x 202; 47-48
create_order calls during the outage (bound 58), 74-77 attempts refused by the breaker (bound
134); all posted 96-97 s after the restart with 200-201 calls, 195-196 orders in 1 attempt and
4-5 in 2 (claimed beside the trial call, or retried after a write timeout); 2. killed with 10
posted and 3-4 in flight, all taken over after the lease (3 of them found by their key, the
sale made by the killed worker), the rest posted in 41-73 s; 3. rejected at attempt 1, both
replays 200, one sale. About 3 min, 1-1.7 min and 5 s.

Before the fix in ``gateway/intake/poster.py`` that the first test found, the breaker read as
not refusing while its trial call was out (``refusing_for`` is 0 once the reset timeout ran
out), so each process claimed every due order during the first call to the restarted Tryton
(~2 s), each refused at once with ``CircuitOpen``, retried after a backoff and claimed again:
195 of 200 orders spent 2 to 5 attempts once Tryton was back without calling it (orders one
failure from ``MAX_ATTEMPTS`` would have been dead-lettered without ever reaching the ERP).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Mint
from tests.harness.gateway_process import GatewayProcess, PostingWorkerProcess, free_port
from tests.harness.tryton import TrytonServer, password_file

pytestmark = [pytest.mark.e2e, pytest.mark.tryton]

WORKERS = 2
#: Posting settings of every test: small, so a retry or a breaker's reset comes within seconds.
FAIL_MAX = 5
RESET_SECONDS = 3.0
POSTING_CONCURRENCY = 4
BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0
MAX_ATTEMPTS = 10
#: Settled statuses: nothing will move the intake on by itself.
GIVEN_UP = {"rejected", "dead_lettered", "cancelled"}

ADDRESS = {"name": "Jo Buyer", "street": "Hauptstrasse 1", "postalCode": "10115", "city": "Berlin", "country": "DE"}
CONTACT = {"name": "Jo Buyer", "email": "jo@example.com"}


class Calls:
    """The calls log every gateway and worker process appends to (``<pid> <operation>``, one
    line per call that reached the Tryton adapter, from ``tests/harness/faults.py``; the fault
    itself is never switched on here)."""

    def __init__(self, workdir: Path) -> None:
        self.control = workdir / "faults.json"
        self.control.write_text('{"mode": "ok"}')
        self.log = workdir / "erp-calls.log"

    def count(self, operation: str) -> int:
        if not self.log.exists():
            return 0
        return sum(1 for line in self.log.read_text().splitlines() if line.partition(" ")[2] == operation)


def _env(tmp_path: Path, tryton: TrytonServer, dev_key_path: Path, calls: Calls, **extra: str) -> dict[str, str]:
    return {
        "ERPGW_BACKEND": "tryton",
        "ERPGW_TRYTON__URL": tryton.url,
        "ERPGW_TRYTON__DATABASE": tryton.database,
        "ERPGW_TRYTON__PASSWORD_FILE": str(password_file()),
        "ERPGW_AUTH__DEV_MODE": "true",
        "ERPGW_AUTH__DEV_KEY_PATH": str(dev_key_path),
        "ERPGW_FAULTS__CONTROL_FILE": str(calls.control),
        "ERPGW_FAULTS__CALLS_LOG": str(calls.log),
        "ERPGW_QUOTAS__CLASSES__DEFAULT__REQUESTS": "1000000",
        # absolute: a separate worker runs in a directory of its own and must find the same files
        "ERPGW_INTAKE__PATH": str(tmp_path / "intake.sqlite"),
        "ERPGW_IDEMPOTENCY__PATH": str(tmp_path / "idempotency.sqlite"),
        "ERPGW_INTAKE__IDLE_SECONDS": "0.2",
        "ERPGW_INTAKE__BACKOFF_SECONDS": str(BACKOFF_SECONDS),
        "ERPGW_INTAKE__MAX_BACKOFF_SECONDS": str(MAX_BACKOFF_SECONDS),
        "ERPGW_INTAKE__MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "ERPGW_INTAKE__POSTING_CONCURRENCY": str(POSTING_CONCURRENCY),
        "ERPGW_BREAKER__FAIL_MAX": str(FAIL_MAX),
        "ERPGW_BREAKER__RESET_TIMEOUT_SECONDS": str(RESET_SECONDS),
        "ERPGW_BREAKER__SYNC_INTERVAL_SECONDS": "0.2",
        **extra,
    }


def _samples(exposition: str) -> dict[str, dict[str, float]]:
    """sample name -> its first label's value (outcome, operation, breaker) -> the sum over the rest."""
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.labels:
                by = out.setdefault(sample.name, {})
                first = next(iter({k: v for k, v in sample.labels.items() if k != "backend"}.values()), "")
                by[first] = by.get(first, 0) + sample.value
    return out


def _order(sku: str, quantity: int, unit_price: str, ref: str) -> dict[str, Any]:
    return {
        "externalRef": ref,
        "currency": "EUR",
        "lines": [{"sku": sku, "quantity": quantity, "unitPrice": unit_price}],
        "shippingAddress": ADDRESS,
        "contact": CONTACT,
    }


@contextmanager
def _client(gateway: GatewayProcess, mint: Mint) -> Iterator[httpx.Client]:
    token = mint(client_id="storefront", ttl=3600)
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0) as client:
        yield client


def _submit(client: httpx.Client, order: dict[str, Any], key: str | None = None) -> httpx.Response:
    return client.post("/v1/orders", json=order, headers={"Idempotency-Key": key or str(uuid.uuid4())})


def _warm(client: httpx.Client, sku: str) -> tuple[int, str]:
    """Read the SKU's stock and its guest price, as a storefront does before it sells it: the
    gateway's cache then holds both. (available to promise, unit price)"""
    stock = client.get(f"/v1/availability/{sku}")
    assert stock.status_code == 200, stock.text
    price = client.post("/v1/prices/check", json={"currency": "EUR", "lines": [{"sku": sku, "quantity": 1}]})
    assert price.status_code == 200, price.text
    return int(stock.json()["availableToPromise"]), str(price.json()["lines"][0]["unitPrice"])


def _intakes(client: httpx.Client) -> list[dict[str, Any]]:
    """Every intake (the operators' list; each test makes at most 500)."""
    answer = client.get("/v1/admin/order-intakes", params={"limit": 500})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def _until(check: Callable[[], bool], seconds: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(every)


def _sales(tryton: TrytonServer, refs: list[str]) -> list[dict[str, Any]]:
    """Tryton's own sales with these references, asked over its JSON-RPC."""
    found: list[dict[str, Any]] = tryton.rpc().model(
        "sale.sale", "search_read", [["reference", "in", refs]], 0, None, None, ["reference", "number", "state"]
    )
    return found


def _wait_posted(client: httpx.Client, count: int, seconds: float) -> tuple[list[dict[str, Any]], float]:
    """Poll the intakes until ``count`` are posted, one is given up, or ``seconds`` pass:
    (the intakes then, seconds waited)."""
    began = time.monotonic()
    seen: list[dict[str, Any]] = []

    def settled() -> bool:
        nonlocal seen
        seen = _intakes(client)
        statuses = Counter(i["status"] for i in seen)
        return statuses["posted"] == count or bool(GIVEN_UP & set(statuses))

    _until(settled, seconds, every=1.0)
    return seen, time.monotonic() - began


def _tally(intakes: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(i["status"] for i in intakes))


def _attempts(intakes: list[dict[str, Any]]) -> dict[int, int]:
    """How many intakes took how many attempts."""
    return dict(sorted(Counter(int(i["attempts"]) for i in intakes).items()))


def _assert_one_sale_each(
    tryton: TrytonServer, client: httpx.Client, intakes: list[dict[str, Any]], refs: list[str]
) -> None:
    """Every reference has exactly one sale in Tryton, confirmed, whose number the intake shows
    and the gateway's order lookup by reference answers."""
    sales = _sales(tryton, refs)
    per_ref = Counter(s["reference"] for s in sales)
    missing = [ref for ref in refs if per_ref[ref] == 0]
    doubled = {ref: n for ref, n in per_ref.items() if n > 1}
    print(f"sales per reference: {dict(Counter(per_ref.values()))} (missing {len(missing)}, doubled {len(doubled)})")
    assert not missing, f"{len(missing)} references have no sale: {missing[:5]}"
    assert not doubled, f"{len(doubled)} references have more than one sale: {list(doubled.items())[:5]}"
    states = Counter(s["state"] for s in sales)
    assert set(states) == {"processing"}, f"sale states {dict(states)}: each must be confirmed, none left unfinished"
    number = {s["reference"]: s["number"] for s in sales}
    by_ref = {i["externalRef"]: i for i in intakes}
    wrong = [
        (ref, by_ref[ref]["orderNumber"], number[ref]) for ref in refs if by_ref[ref]["orderNumber"] != number[ref]
    ]
    assert not wrong, f"intakes showing another number than their sale: {wrong[:5]}"
    unseen = []
    for ref in refs:
        found = client.get("/v1/orders", params={"externalRef": ref})
        assert found.status_code == 200, found.text
        if [o["orderNumber"] for o in found.json()["items"]] != [number[ref]]:
            unseen.append((ref, found.json()["items"]))
    assert not unseen, f"{len(unseen)} orders not found by their reference through the gateway: {unseen[:3]}"


# -- 1. Tryton stopped for 60 s while orders arrive ----------------------------------------------------

OUTAGE_SECONDS = 60.0
ARRIVALS = 200
OUTAGE_SKUS = ("TEE-NVY-S", "MUG-MOS", "TEE-WHT-S", "LAMP-BLK", "TEE-BLK-M")


@pytest.mark.slow
def test_orders_taken_while_tryton_is_down_are_posted_once_when_it_is_back(
    tmp_path: Path, tryton: TrytonServer, redis_url: str, dev_key_path: Path, mint: Mint
) -> None:
    calls = Calls(tmp_path)
    env = _env(tmp_path, tryton, dev_key_path, calls, ERPGW_REDIS__URL=redis_url)
    with GatewayProcess(tmp_path, env=env, workers=WORKERS) as gateway, _client(gateway, mint) as client:
        prices = {}
        for sku in OUTAGE_SKUS:
            available, prices[sku] = _warm(client, sku)
            assert available >= ARRIVALS // len(OUTAGE_SKUS), (sku, available)
        run = uuid.uuid4().hex[:8]
        refs = [f"OUT-{run}-{i:03d}" for i in range(ARRIVALS)]
        answers: list[httpx.Response] = []
        tryton.stop()
        stopped_at = time.monotonic()
        try:
            # spread over the outage, as a storefront's orders come
            for i, ref in enumerate(refs):
                time.sleep(max(0.0, stopped_at + i * (OUTAGE_SECONDS - 10) / ARRIVALS - time.monotonic()))
                sku = OUTAGE_SKUS[i % len(OUTAGE_SKUS)]
                answers.append(_submit(client, _order(sku, 1, prices[sku], ref)))
            time.sleep(max(0.0, stopped_at + OUTAGE_SECONDS - time.monotonic()))
            during = _intakes(client)
            calls_during = calls.count("create_order")
        finally:
            tryton.restart()
        print(f"answers while Tryton was down: {dict(Counter(a.status_code for a in answers))}")
        print(
            f"at the end of the outage: {_tally(during)}; attempts {_attempts(during)}; "
            f"create_order calls {calls_during}"
        )
        refused = [a.text for a in answers if a.status_code != 202]
        assert not refused, f"{len(refused)} of {ARRIVALS} not accepted: {refused[:3]}"
        assert {a.json()["status"] for a in answers} == {"accepted"}
        assert all(a.json()["held"] for a in answers)
        # nothing could be posted, nothing was given up: every order waits for Tryton
        assert set(_tally(during)) <= {"accepted", "posting"}, _tally(during)

        intakes, waited = _wait_posted(client, ARRIVALS, 400)
        calls_after = calls.count("create_order") - calls_during
        before = {i["intakeId"]: int(i["attempts"]) for i in during}
        extra = Counter(int(i["attempts"]) - before[i["intakeId"]] for i in intakes)
        print(f"after Tryton came back: {_tally(intakes)} in {waited:.0f} s; attempts {_attempts(intakes)}")
        print(
            f"attempts each took once Tryton was back: {dict(sorted(extra.items()))}; create_order calls {calls_after}"
        )
        (tmp_path / "intakes.json").write_text(json.dumps({"at_end_of_outage": during, "last": intakes}))
        assert _tally(intakes) == {"posted": ARRIVALS}, _tally(intakes)
        _assert_one_sale_each(tryton, client, intakes, refs)

        processes = WORKERS
        # While Tryton was down, the write breaker kept the posts away from it: per process, the
        # failures that open it (FAIL_MAX, and the posts in flight beside them), then one trial
        # call per reset timeout.
        windows = int(OUTAGE_SECONDS / RESET_SECONDS) + 1
        bound = processes * (FAIL_MAX + POSTING_CONCURRENCY - 1 + windows)
        assert calls_during <= bound, f"{calls_during} create_order calls reached the stopped Tryton; bound {bound}"
        # Each attempt is a claim: one that reached the adapter (a call above) or one the breaker
        # refused. Refused: only the posts claimed beside a trial call, or beside the breaker's
        # opening in the other process (each then holds its claims until the breaker allows calls).
        held_back = sum(int(i["attempts"]) for i in during) - calls_during
        bound = processes * ((POSTING_CONCURRENCY - 1) * windows + POSTING_CONCURRENCY)
        print(f"attempts during the outage: {calls_during} reached the adapter, {held_back} refused by the breaker")
        assert held_back <= bound, f"{held_back} attempts refused by the breaker during the outage; bound {bound}"
        # Once it was back, the backlog reached it once per order, no storm of repeats: each order
        # one call, plus at most the posts one process has in flight, repeated after a timeout.
        assert calls_after <= ARRIVALS + processes * POSTING_CONCURRENCY, calls_after
        # ... and no order spent attempts it did not make: one attempt to post it, a second only for
        # the few claimed beside the breaker's trial call (refused by the breaker: retried).
        assert max(extra) <= 2, f"attempts per order once Tryton was back: {dict(sorted(extra.items()))}"
        assert sum(n for spent, n in extra.items() if spent > 1) <= processes * POSTING_CONCURRENCY, dict(extra)


# -- 2. the posting worker killed mid-batch -------------------------------------------------------------

BATCH = 100
#: The worker's hold on an order, longer than the write timeout (the settings check insists);
#: Tryton adopts a sale an interrupted attempt left unfinished once it is older than ADOPT_SECONDS.
WRITE_SECONDS = 10.0
LEASE_SECONDS = 15.0
ADOPT_SECONDS = 12.0
BATCH_SKUS = ("TEE-NVY-S", "MUG-MOS", "TEE-WHT-S", "LAMP-BLK")


@pytest.mark.slow
def test_the_posting_worker_killed_mid_batch_leaves_every_order_posted_once(
    tmp_path: Path, tryton: TrytonServer, dev_key_path: Path, mint: Mint
) -> None:
    calls = Calls(tmp_path)
    env = _env(
        tmp_path,
        tryton,
        dev_key_path,
        calls,
        ERPGW_INTAKE__POST_IN_WORKERS="false",
        ERPGW_INTAKE__LEASE_SECONDS=str(LEASE_SECONDS),
        ERPGW_TIMEOUTS__WRITE_SECONDS=str(WRITE_SECONDS),
        ERPGW_TRYTON__ADOPT_DRAFTS_AFTER_SECONDS=str(ADOPT_SECONDS),
    )
    with GatewayProcess(tmp_path, env=env, workers=WORKERS) as gateway, _client(gateway, mint) as client:
        prices = {}
        for sku in BATCH_SKUS:
            available, prices[sku] = _warm(client, sku)
            assert available >= BATCH // len(BATCH_SKUS), (sku, available)
        run = uuid.uuid4().hex[:8]
        refs = [f"KILL-{run}-{i:03d}" for i in range(BATCH)]
        answers = [
            _submit(client, _order(BATCH_SKUS[i % len(BATCH_SKUS)], 1, prices[BATCH_SKUS[i % len(BATCH_SKUS)]], ref))
            for i, ref in enumerate(refs)
        ]
        assert Counter(a.status_code for a in answers) == {202: BATCH}, [
            a.text for a in answers if a.status_code != 202
        ][:3]
        assert _tally(_intakes(client)) == {"accepted": BATCH}  # nobody posts but the worker

        first = PostingWorkerProcess(tmp_path, env, name="worker-1")
        second = PostingWorkerProcess(tmp_path, env, name="worker-2")
        try:
            first.start()
            at_kill: dict[str, int] = {}

            def some_posted() -> bool:
                at_kill.clear()
                at_kill.update(_tally(_intakes(client)))
                return at_kill.get("posted", 0) >= 10 or not first.running

            assert _until(some_posted, 120, every=0.2), f"worker posted {at_kill} in 120 s:\n{first.log_tail()}"
            code = first.kill()
            after_kill = _intakes(client)
            in_flight = {i["intakeId"] for i in after_kill if i["status"] == "posting"}
            print(f"at SIGKILL: {at_kill}; just after: {_tally(after_kill)}; exit status {code}")
            assert code == -9, first.log_tail()
            assert 0 < _tally(after_kill).get("posted", 0) < BATCH, _tally(after_kill)
            assert 1 <= len(in_flight) <= POSTING_CONCURRENCY, f"posts in flight at the kill: {_tally(after_kill)}"

            second.start()
            intakes, waited = _wait_posted(client, BATCH, 180)
            print(f"after the second worker: {_tally(intakes)} in {waited:.0f} s; attempts {_attempts(intakes)}")
            print(f"create_order calls: {calls.count('create_order')}")
        finally:
            first.stop()
            stopped = second.stop()
        assert _tally(intakes) == {"posted": BATCH}, f"{_tally(intakes)}\n{second.log_tail()}"
        assert stopped == 0, f"the second worker's exit status after SIGTERM: {stopped}\n{second.log_tail()}"
        _assert_one_sale_each(tryton, client, intakes, refs)
        # the posts the killed worker had in flight were claimed again once their lease ran out:
        # each its second attempt at least (a third if Tryton still called its sale in progress)
        taken_over = [i for i in intakes if i["intakeId"] in in_flight]
        assert all(i["attempts"] >= 2 for i in taken_over), [(i["intakeId"], i["attempts"]) for i in taken_over]
        found_by_key = second.log_path.read_text(errors="replace").count("(found by its key)")
        print(f"taken over: {len(taken_over)}; found in Tryton by their key (sale made by the killed worker): ", end="")
        print(f"{found_by_key}; history of one: {[h['status'] for h in taken_over[0]['history']]}")


# -- 3. a poison order ----------------------------------------------------------------------------------

POISON_SKU = "MUG-SLT"  # in stock in both warehouses, priced, and salable = false in Tryton
#: Seconds the gateway believes what Tryton said of a SKU's salability, in the poison test.
SALABILITY_TTL = 1.0


def _set_salable(tryton: TrytonServer, sku: str, salable: bool) -> None:
    """Through Tryton's own RPC, as its back office would: the product's template is (not) for sale."""
    rpc = tryton.rpc()
    (product,) = rpc.model("product.product", "search_read", [["code", "=", sku]], 0, None, None, ["template"])
    rpc.model("product.template", "write", [product["template"]], {"salable": salable})


def _atp(client: httpx.Client, sku: str) -> int:
    """Available to promise, on a new connection (so the answers come from either worker)."""
    answer = client.get(f"/v1/availability/{sku}", headers={"Connection": "close"})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["availableToPromise"])


def test_a_poison_order_is_rejected_released_then_fixed_and_replayed_posts_once(
    tmp_path: Path, tryton: TrytonServer, dev_key_path: Path, mint: Mint
) -> None:
    calls = Calls(tmp_path)
    env = _env(
        tmp_path,
        tryton,
        dev_key_path,
        calls,
        ERPGW_INTAKE__POST_IN_WORKERS="false",
        ERPGW_INTAKE__SALABILITY_TTL_SECONDS=str(SALABILITY_TTL),
        ERPGW_INTAKE__METRICS_PORT=str(metrics_port := free_port()),
    )
    worker = PostingWorkerProcess(tmp_path, env, name="worker")
    try:
        with GatewayProcess(tmp_path, env=env, workers=WORKERS) as gateway, _client(gateway, mint) as client:
            _set_salable(tryton, POISON_SKU, True)
            try:
                before, price = _warm(client, POISON_SKU)
                assert before >= 2
                ref = f"POISON-{uuid.uuid4().hex[:10]}"
                accepted = _submit(client, _order(POISON_SKU, 2, price, ref))
                assert accepted.status_code == 202, accepted.text
            finally:  # taken off sale after the gateway accepted it, before anything posts it
                _set_salable(tryton, POISON_SKU, False)
            assert sum(h["quantity"] for h in accepted.json()["held"]) == 2
            location = accepted.headers["location"]
            intake_id = accepted.json()["intakeId"]
            worker.start()

            seen: dict[str, Any] = {}

            def settled() -> bool:
                seen.update(client.get(location).json())
                return seen["status"] not in ("accepted", "posting")

            assert _until(settled, 30), f"still {seen['status']} after 30 s: {seen}"
            print(f"poison intake: {seen['status']} after {seen['attempts']} attempt(s): {seen['lastError']}")
            assert seen["status"] == "rejected", seen
            assert seen["attempts"] == 1, "a business refusal is not retried"
            assert "not-salable" in seen["lastError"], seen["lastError"]
            assert f"{POISON_SKU!r} is not for sale" in seen["lastError"], seen["lastError"]
            assert seen["orderNumber"] is None
            assert _sales(tryton, [ref]) == []
            # its hold is released: every worker answers the stock it had before (within the local TTL)
            assert _until(lambda: all(_atp(client, POISON_SKU) == before for _ in range(4)), 15), (
                f"{POISON_SKU}: {_atp(client, POISON_SKU)} available, {before} before the order"
            )
            # once the belief ran out (in either worker), a new order for it is refused at the door
            time.sleep(SALABILITY_TTL)
            for _ in range(4):
                late = _submit(client, _order(POISON_SKU, 1, price, f"POISON-{uuid.uuid4().hex[:10]}"))
                assert late.status_code == 422, late.text
                assert late.json()["type"].endswith("/not-salable"), late.text

            _set_salable(tryton, POISON_SKU, True)
            try:
                replays = [client.post(f"/v1/admin/order-intakes/{intake_id}/replay") for _ in range(2)]
                print(f"replays: {[(r.status_code, r.json().get('status')) for r in replays]}")
                assert [r.status_code for r in replays] == [200, 200], [r.text for r in replays]
                assert replays[0].json()["status"] == "accepted"
                assert replays[1].json()["status"] in ("accepted", "posting", "posted")
                assert _until(lambda: client.get(location).json()["status"] == "posted", 30), client.get(location).text
                posted = client.get(location).json()
                print(f"replayed intake: posted as {posted['orderNumber']} after {posted['attempts']} attempt(s)")
                assert posted["attempts"] == 1  # counted afresh from the replay
                history = [h["status"] for h in posted["history"]]
                assert history == ["accepted", "posting", "rejected", "accepted", "posting", "posted"], history
                _assert_one_sale_each(tryton, client, [posted], [ref])
                # the replay held the units again; posted, Tryton commits them and they are not subtracted twice
                assert _until(lambda: all(_atp(client, POISON_SKU) == before - 2 for _ in range(4)), 20), (
                    f"{POISON_SKU}: {_atp(client, POISON_SKU)} available, {before} before the order of 2"
                )
                assert calls.count("create_order") == 2  # the rejected attempt and the replayed one
                assert _tally(_intakes(client)) == {"posted": 1}
                # the separate worker's own /metrics say the same (the gateway's do not see its posts)
                scraped = _samples(httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text)
                assert scraped["erpgw_intake_posts_total"] == {"rejected": 1, "posted": 1}
                assert scraped["erpgw_erp_call_duration_seconds_count"] == {"create_order": 2}
                assert scraped["erpgw_breaker_state"] == {"tryton:reads": 0, "tryton:writes": 0}
            finally:
                _set_salable(tryton, POISON_SKU, False)
    finally:  # whatever failed, the worker this test started stops
        worker.stop()
