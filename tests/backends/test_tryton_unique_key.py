"""The erpgw_idempotency Tryton module: one sale complaint per reference and one sale per
``idempotency_key`` (Idempotency-Key), enforced by the database on SQLite and on PostgreSQL,
whatever the clients do at the same moment.

Raw JSON-RPC through the harness's own client, not the adapter: this is the ERP-side guarantee
the adapter relies on (erp_backends/tryton/returns.py, sales.py).
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.harness.postgres_server import pg_binary
from tests.harness.tryton import COMPLAINT_TYPE_NAME, TrytonRPC, TrytonRPCError, TrytonServer

pytestmark = pytest.mark.tryton

UNIQUE_MESSAGE = "A complaint with this reference already exists"
SALE_UNIQUE_MESSAGE = "A sale with this idempotency key already exists"
CLIENTS = 20


@pytest.fixture(params=["tryton", "tryton_pg"])
def server(request: pytest.FixtureRequest) -> TrytonServer:
    served: TrytonServer = request.getfixturevalue(request.param)
    return served


def _complaint(rpc: TrytonRPC, reference: str) -> dict[str, Any]:
    """A valid return complaint on SO-1005 (done, delivered): one unit of its first line."""
    (sale,) = rpc.model("sale.sale", "search_read", [["number", "=", "SO-1005"]], 0, 1, None, ["party", "lines"])
    (line,) = rpc.model("sale.line", "read", sale["lines"][:1], ["unit_price"])
    (type_id,) = rpc.model("sale.complaint.type", "search", [["name", "=", COMPLAINT_TYPE_NAME]], 0, 1, None)
    returned = {"line": line["id"], "quantity": 1, "unit_price": line["unit_price"]}
    return {
        "customer": sale["party"],
        "type": type_id,
        "origin": f"sale.sale,{sale['id']}",
        "reference": reference,
        "actions": [
            [
                "create",
                [
                    {
                        "action": "sale_return",
                        "sale_lines": [["create", [returned]]],
                    }
                ],
            ]
        ],
    }


def _sale(rpc: TrytonRPC, key: str | None) -> dict[str, Any]:
    """A draft sale like SO-1001 (same party, addresses, warehouse, first product), keyed ``key``."""
    fields = ["party", "invoice_address", "shipment_address", "warehouse", "currency", "lines"]
    (sale,) = rpc.model("sale.sale", "search_read", [["number", "=", "SO-1001"]], 0, 1, None, fields)
    (line,) = rpc.model("sale.line", "read", sale["lines"][:1], ["product", "unit", "unit_price"])
    values = {name: sale[name] for name in fields if name != "lines"}
    lines = [{"product": line["product"], "unit": line["unit"], "quantity": 1, "unit_price": line["unit_price"]}]
    return {**values, "idempotency_key": key, "idempotency_fingerprint": "f", "lines": [["create", lines]]}


def _assert_unique_error(error: Any, message: str = UNIQUE_MESSAGE) -> None:
    assert isinstance(error, list), error
    assert error[0] == "UserError", error
    assert error[1][0].startswith(message), error


def _count(rpc: TrytonRPC, reference: str) -> int:
    count: int = rpc.model("sale.complaint", "search_count", [["reference", "=", reference]])
    return count


def test_a_second_complaint_with_the_same_reference_is_refused(server: TrytonServer) -> None:
    rpc = server.rpc().login()
    values = _complaint(rpc, f"unique-{uuid.uuid4()}")
    rpc.model("sale.complaint", "create", [values])
    with pytest.raises(TrytonRPCError) as caught:
        rpc.model("sale.complaint", "create", [values])
    _assert_unique_error(caught.value.error)
    assert _count(rpc, values["reference"]) == 1
    # no reference is no key: any number of complaints may have none
    anonymous = {**values, "reference": None}
    rpc.model("sale.complaint", "create", [anonymous, anonymous])


def test_concurrent_creates_with_one_reference_make_one_complaint(server: TrytonServer) -> None:
    rpc = server.rpc().login()  # one login shared by the threads: each call is its own request
    values = _complaint(rpc, f"race-{uuid.uuid4()}")
    start = threading.Barrier(CLIENTS)

    def create(_: int) -> tuple[str, Any]:
        start.wait()
        try:
            return "created", rpc.model("sale.complaint", "create", [values])
        except TrytonRPCError as e:
            return "refused", e.error

    with ThreadPoolExecutor(CLIENTS) as pool:
        outcomes = list(pool.map(create, range(CLIENTS)))
    created = [value for kind, value in outcomes if kind == "created"]
    refused = [value for kind, value in outcomes if kind == "refused"]
    assert len(created) == 1, outcomes
    for error in refused:
        _assert_unique_error(error)
    assert _count(rpc, values["reference"]) == 1


def test_a_second_sale_with_the_same_key_is_refused(server: TrytonServer) -> None:
    rpc = server.rpc().login()
    values = _sale(rpc, f"unique-{uuid.uuid4()}")
    (first,) = rpc.model("sale.sale", "create", [values])
    with pytest.raises(TrytonRPCError) as caught:
        rpc.model("sale.sale", "create", [values])
    _assert_unique_error(caught.value.error, SALE_UNIQUE_MESSAGE)
    key = values["idempotency_key"]
    assert rpc.model("sale.sale", "search_count", [["idempotency_key", "=", key]]) == 1
    with pytest.raises(TrytonRPCError):  # set when the sale is created, never changed
        rpc.model("sale.sale", "write", [first], {"idempotency_key": f"other-{uuid.uuid4()}"})
    (copy,) = rpc.model("sale.sale", "copy", [first])  # a copy is another sale: no key
    assert rpc.model("sale.sale", "read", [copy], ["idempotency_key"])[0]["idempotency_key"] is None
    rpc.model("sale.sale", "create", [_sale(rpc, None), _sale(rpc, None)])  # no key: no constraint


def test_concurrent_sales_with_one_key_make_one_sale(server: TrytonServer) -> None:
    rpc = server.rpc().login()
    values = _sale(rpc, f"race-{uuid.uuid4()}")
    start = threading.Barrier(CLIENTS)

    def create(_: int) -> tuple[str, Any]:
        start.wait()
        try:
            return "created", rpc.model("sale.sale", "create", [values])
        except TrytonRPCError as e:
            return "refused", e.error

    with ThreadPoolExecutor(CLIENTS) as pool:
        outcomes = list(pool.map(create, range(CLIENTS)))
    assert [kind for kind, _ in outcomes].count("created") == 1, outcomes
    for kind, error in outcomes:
        if kind == "refused":
            _assert_unique_error(error, SALE_UNIQUE_MESSAGE)
    assert rpc.model("sale.sale", "search_count", [["idempotency_key", "=", values["idempotency_key"]]]) == 1


def test_on_postgresql_a_racing_create_waits_for_the_first_commit_then_fails(tryton_pg: TrytonServer) -> None:
    rpc = tryton_pg.rpc().login()
    reference = f"held-{uuid.uuid4()}"
    (holder,) = rpc.model("sale.complaint", "create", [_complaint(rpc, f"other-{uuid.uuid4()}")])
    pg = tryton_pg.postgres
    # another transaction takes the key and does not commit yet
    psql = subprocess.Popen(
        [pg_binary("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", tryton_pg.database],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=pg.env(),
        text=True,
    )
    assert psql.stdin is not None
    outcome: dict[str, Any] = {}
    try:
        psql.stdin.write(f"BEGIN;\nUPDATE sale_complaint SET reference = '{reference}' WHERE id = {holder};\n")
        psql.stdin.flush()
        deadline = time.monotonic() + 10
        while not _holds(tryton_pg) and time.monotonic() < deadline:
            time.sleep(0.05)

        def create() -> None:
            try:
                outcome["created"] = rpc.model("sale.complaint", "create", [_complaint(rpc, reference)])
            except TrytonRPCError as e:
                outcome["refused"] = e.error

        racer = threading.Thread(target=create)
        racer.start()
        racer.join(1.5)
        assert racer.is_alive(), f"the create did not wait for the open transaction: {outcome}"
        assert _lock_waiters(tryton_pg) >= 1
        psql.stdin.write("COMMIT;\n")
        psql.stdin.flush()
        racer.join(20)
        assert not racer.is_alive()
    finally:
        psql.stdin.close()
        psql.wait(10)
    assert "created" not in outcome, outcome
    _assert_unique_error(outcome["refused"])
    assert _count(rpc, reference) == 1


def _holds(server: TrytonServer) -> bool:
    """Whether the psql transaction has run its UPDATE (and now holds the key)."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND state = 'idle in transaction' AND query LIKE 'UPDATE sale_complaint%'"
    )
    return server.postgres.psql(sql, database=server.database) != "0"


def _lock_waiters(server: TrytonServer) -> int:
    sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    return int(server.postgres.psql(sql, database=server.database))
