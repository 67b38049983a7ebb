"""The embedded sample ERP: real persistent state in SQLite, seeded from ``retail.toml``.

It exists so that a newcomer gets a working gateway with one command, and so that the
conformance suite has a fast reference backend. Several gunicorn workers share one database
file (WAL mode); writes run in ``BEGIN IMMEDIATE`` transactions so that the over-return check
and the idempotency lookups hold across processes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from contracts.v1 import (
    Address,
    AvailabilityBatch,
    Customer,
    Order,
    OrderIntakeRequest,
    OrderLine,
    OrderList,
    OrderValidation,
    OrderValidationRequest,
    PriceCheck,
    PriceCheckRequest,
    PriceLine,
    PriceSource,
    RefundEstimate,
    ReturnAuthorization,
    ReturnLine,
    ReturnRequest,
    Shipment,
    ShipmentLine,
    SkuAvailability,
    WarehouseStock,
)
from erp_backends.dataset import Dataset, dataset_digest, load_dataset
from erp_backends.errors import ErpUnavailable, NotFound, Rejected
from erp_backends.port import CallContext, ErpBackend, IdempotencyToken, OrderOutcome, ReturnOutcome
from erp_backends.rules import (
    SkuFacts,
    judge_cart,
    now,
    order_status,
    plan_return,
    price_check,
    price_line,
    round_money,
)
from erp_backends.sqlite_file import open_shared

__all__ = ["SampleBackend", "SampleSettings"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE warehouses (code TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE products (sku TEXT PRIMARY KEY, name TEXT NOT NULL, unit TEXT NOT NULL,
    list_price TEXT NOT NULL, salable INTEGER NOT NULL);
CREATE TABLE stock (sku TEXT NOT NULL REFERENCES products, warehouse TEXT NOT NULL REFERENCES warehouses,
    on_hand INTEGER NOT NULL, PRIMARY KEY (sku, warehouse));
CREATE TABLE price_lists (code TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE price_rules (price_list TEXT NOT NULL REFERENCES price_lists, position INTEGER NOT NULL,
    id TEXT NOT NULL, sku TEXT, min_quantity INTEGER NOT NULL, discount_percent TEXT NOT NULL,
    PRIMARY KEY (price_list, position));
CREATE TABLE customers (reference TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT, phone TEXT,
    street TEXT, postal_code TEXT, city TEXT, country TEXT, price_list TEXT REFERENCES price_lists);
CREATE TABLE orders (number TEXT PRIMARY KEY, external_ref TEXT, customer TEXT NOT NULL REFERENCES customers,
    ordered_on TEXT NOT NULL, warehouse TEXT NOT NULL, state TEXT NOT NULL, invoice TEXT NOT NULL,
    payment TEXT NOT NULL, currency TEXT NOT NULL);
CREATE INDEX orders_external_ref ON orders (external_ref);
CREATE TABLE order_lines (order_number TEXT NOT NULL REFERENCES orders, ref TEXT NOT NULL,
    position INTEGER NOT NULL, sku TEXT NOT NULL, quantity INTEGER NOT NULL, unit_price TEXT NOT NULL,
    shipped INTEGER NOT NULL, PRIMARY KEY (order_number, ref));
CREATE TABLE shipments (number TEXT PRIMARY KEY, order_number TEXT NOT NULL REFERENCES orders,
    position INTEGER NOT NULL, state TEXT NOT NULL, shipped_on TEXT, tracking TEXT);
CREATE TABLE shipment_lines (shipment_number TEXT NOT NULL REFERENCES shipments, sku TEXT NOT NULL,
    quantity INTEGER NOT NULL);
CREATE TABLE returns (rma_number TEXT PRIMARY KEY, order_number TEXT NOT NULL REFERENCES orders,
    status TEXT NOT NULL, created_at TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL, currency TEXT NOT NULL);
CREATE TABLE return_lines (rma_number TEXT NOT NULL REFERENCES returns, position INTEGER NOT NULL,
    line_ref TEXT NOT NULL, sku TEXT NOT NULL, quantity INTEGER NOT NULL, reason TEXT NOT NULL,
    comment TEXT, unit_price TEXT NOT NULL, PRIMARY KEY (rma_number, position));
"""

# Columns added after the first release (``_upgrade`` adds them to any file that lacks them):
# what an order intake stores on its order, and a line's warehouse when it is not the order's.
_ADDED_COLUMNS = {
    "orders": (
        "idempotency_key TEXT",
        "fingerprint TEXT",
        "contact_name TEXT",
        "contact_email TEXT",
        "contact_phone TEXT",
        "ship_street TEXT",
        "ship_postal_code TEXT",
        "ship_city TEXT",
        "ship_country TEXT",
    ),
    "order_lines": ("warehouse TEXT REFERENCES warehouses",),
}

# Stock committed to open orders: ordered minus shipped, on orders that are not cancelled.
_COMMITTED = """
SELECT l.sku, COALESCE(l.warehouse, o.warehouse) AS wh, SUM(l.quantity - l.shipped) FROM order_lines l
JOIN orders o ON o.number = l.order_number
WHERE o.state != 'cancelled' AND l.sku IN ({marks}) GROUP BY l.sku, wh
"""

#: The customer guest orders (no customer named) are booked to; each keeps its own contact.
_GUEST_CUSTOMER = "GUEST"


class SampleSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Settings of the embedded sample ERP."""

    #: SQLite file; created and seeded from the dataset on first start.
    path: str = "var/sample-erp.sqlite"
    #: Artificial delay per call in milliseconds, to feel what an ERP's latency does.
    latency_ms: float = 0.0


class SampleBackend(ErpBackend):
    """``ErpBackend`` over a local SQLite database. All SQL runs on one worker thread.

    ``name`` is given by the composition root; ``sample`` unless several are configured."""

    def __init__(self, settings: SampleSettings, dataset: Dataset | None = None, *, name: str = "sample") -> None:
        self.name = name
        self._settings = settings
        self._dataset = dataset or load_dataset()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sample-erp")
        self._conn: sqlite3.Connection | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = open_shared(Path(self._settings.path), "PRAGMA foreign_keys=ON")
            _seed_once(conn, self._dataset)
            self._conn = conn
        return self._conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._settings.latency_ms:
            await asyncio.sleep(self._settings.latency_ms / 1000)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, lambda: fn(self._connect()))
        except sqlite3.DatabaseError as exc:
            raise ErpUnavailable(f"sample ERP database error: {exc}") from exc

    async def start(self, ctx: CallContext) -> None:
        await self.check_ready()  # opens (and on first use seeds) the database

    async def check_ready(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT COUNT(*) FROM products").fetchone())

    async def aclose(self) -> None:
        def close(_: sqlite3.Connection) -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        if self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, close, self._conn)
        self._executor.shutdown(wait=True)

    # -- availability -----------------------------------------------------------------------

    async def get_availability(
        self, skus: Sequence[str], warehouses: Sequence[str] | None, ctx: CallContext
    ) -> AvailabilityBatch:
        return await self._run(lambda conn: _availability(conn, skus, warehouses))

    # -- prices -----------------------------------------------------------------------------

    async def check_prices(self, request: PriceCheckRequest, ctx: CallContext) -> PriceCheck:
        return await self._run(lambda conn: _prices(conn, request, self._dataset.currency))

    async def validate_order(self, request: OrderValidationRequest, ctx: CallContext) -> OrderValidation:
        def judge(conn: sqlite3.Connection) -> OrderValidation:
            _check_currency(request.currency, self._dataset.currency)
            customer = _customer_price_list(conn, request.customer)
            warehouses = [request.warehouse] if request.warehouse else None
            stock = _availability(conn, sorted({line.sku for line in request.lines}), warehouses)
            atp = {item.sku: item.available_to_promise for item in stock.items}
            facts: dict[int, SkuFacts | None] = {}
            for index, line in enumerate(request.lines):
                product = _product(conn, line.sku)
                if product is None:
                    facts[index] = None
                    continue
                price, _ = _unit_price(conn, customer, line.sku, line.quantity, Decimal(product["list_price"]))
                facts[index] = SkuFacts(
                    salable=bool(product["salable"]), available=atp.get(line.sku, 0), unit_price=price
                )
            return judge_cart(request, facts)

        return await self._run(judge)

    # -- orders -----------------------------------------------------------------------------

    async def get_order(self, order_number: str, ctx: CallContext) -> Order:
        def read(conn: sqlite3.Connection) -> Order:
            order = _order(conn, order_number)
            if order is None:
                raise NotFound("order", order_number)
            return order

        return await self._run(read)

    async def find_orders(self, external_ref: str, ctx: CallContext) -> OrderList:
        def read(conn: sqlite3.Connection) -> OrderList:
            rows = conn.execute(
                "SELECT number FROM orders WHERE external_ref = ? ORDER BY number", (external_ref,)
            ).fetchall()
            return OrderList(items=[o for (number,) in rows if (o := _order(conn, number)) is not None])

        return await self._run(read)

    async def create_order(
        self, request: OrderIntakeRequest, idempotency: IdempotencyToken, ctx: CallContext
    ) -> OrderOutcome:
        return await self._run(lambda conn: _create_order(conn, request, idempotency, self._dataset.currency))

    # -- returns ----------------------------------------------------------------------------

    async def create_return(
        self, request: ReturnRequest, idempotency: IdempotencyToken, ctx: CallContext
    ) -> ReturnOutcome:
        return await self._run(lambda conn: _create_return(conn, request, idempotency))

    async def get_return(self, rma_number: str, ctx: CallContext) -> ReturnAuthorization:
        def read(conn: sqlite3.Connection) -> ReturnAuthorization:
            rma = _return(conn, rma_number)
            if rma is None:
                raise NotFound("return authorization", rma_number)
            return rma

        return await self._run(read)


# -- SQL, run on the backend's thread ---------------------------------------------------------


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _check_currency(currency: str, ours: str) -> None:
    if currency != ours:
        raise Rejected("unsupported-currency", f"prices are kept in {ours}, not {currency}", field="currency")


def _known_warehouses(conn: sqlite3.Connection, wanted: Sequence[str] | None) -> list[str]:
    codes = [code for (code,) in conn.execute("SELECT code FROM warehouses ORDER BY code")]
    if wanted is None:
        return codes
    for code in wanted:
        if code not in codes:
            raise Rejected("unknown-warehouse", f"warehouse {code!r} is unknown", field="warehouse")
    return list(dict.fromkeys(wanted))


def _availability(conn: sqlite3.Connection, skus: Sequence[str], wanted: Sequence[str] | None) -> AvailabilityBatch:
    warehouses = _known_warehouses(conn, wanted)
    unique = list(dict.fromkeys(skus))
    marks = _marks(unique)  # only "?" placeholders are formatted into the SQL
    units = dict(conn.execute(f"SELECT sku, unit FROM products WHERE sku IN ({marks})", unique).fetchall())  # noqa: S608
    on_hand = {
        (sku, wh): qty
        for sku, wh, qty in conn.execute(
            f"SELECT sku, warehouse, on_hand FROM stock WHERE sku IN ({marks})",  # noqa: S608
            unique,
        )
    }
    committed = {(sku, wh): qty for sku, wh, qty in conn.execute(_COMMITTED.format(marks=marks), unique)}
    as_of = now()
    items: list[SkuAvailability] = []
    for sku in unique:
        if sku not in units:
            continue
        per_wh = [
            WarehouseStock(
                warehouse=wh,
                on_hand=on_hand.get((sku, wh), 0),
                committed=committed.get((sku, wh), 0),
                available_to_promise=on_hand.get((sku, wh), 0) - committed.get((sku, wh), 0),
            )
            for wh in warehouses
        ]
        items.append(
            SkuAvailability(
                sku=sku,
                unit=units[sku],
                on_hand=sum(w.on_hand for w in per_wh),
                committed=sum(w.committed for w in per_wh),
                available_to_promise=sum(w.available_to_promise for w in per_wh),
                warehouses=per_wh,
                as_of=as_of,
            )
        )
    return AvailabilityBatch(items=items, unknown_skus=[sku for sku in unique if sku not in units])


def _product(conn: sqlite3.Connection, sku: str) -> dict[str, Any] | None:
    rows = _rows(conn, "SELECT sku, name, unit, list_price, salable FROM products WHERE sku = ?", (sku,))
    return rows[0] if rows else None


def _customer_price_list(conn: sqlite3.Connection, customer: str | None) -> str | None:
    if customer is None:
        return None
    row = conn.execute("SELECT price_list FROM customers WHERE reference = ?", (customer,)).fetchone()
    if row is None:
        raise Rejected("unknown-customer", f"customer {customer!r} is unknown", field="customer")
    return row[0]  # type: ignore[no-any-return]


def _unit_price(
    conn: sqlite3.Connection, price_list: str | None, sku: str, quantity: int, list_price: Decimal
) -> tuple[Decimal, PriceSource]:
    """First matching rule of the customer's list, in order; else the list price."""
    if price_list is not None:
        for rule_id, rule_sku, min_quantity, discount in conn.execute(
            "SELECT id, sku, min_quantity, discount_percent FROM price_rules WHERE price_list = ? ORDER BY position",
            (price_list,),
        ):
            if (rule_sku is None or rule_sku == sku) and quantity >= min_quantity:
                price = round_money(list_price * (100 - Decimal(discount)) / 100)
                return price, PriceSource(kind="price_list", price_list=price_list, rule=rule_id)
    return round_money(list_price), PriceSource(kind="list_price", price_list=None, rule=None)


def _prices(conn: sqlite3.Connection, request: PriceCheckRequest, currency: str) -> PriceCheck:
    _check_currency(request.currency, currency)
    price_list = _customer_price_list(conn, request.customer)
    as_of = now()
    lines: list[PriceLine] = []
    for index, line in enumerate(request.lines):
        product = _product(conn, line.sku)
        if product is None:
            raise Rejected("unknown-sku", f"SKU {line.sku!r} is unknown", field=f"lines[{index}].sku")
        list_price = round_money(Decimal(product["list_price"]))
        unit, source = _unit_price(conn, price_list, line.sku, line.quantity, list_price)
        lines.append(price_line(line.sku, line.quantity, unit, list_price, source, as_of))
    return price_check(request.customer, currency, lines, as_of)


def _returned(conn: sqlite3.Connection, order_number: str) -> dict[str, int]:
    return dict(
        conn.execute(
            "SELECT l.line_ref, SUM(l.quantity) FROM return_lines l JOIN returns r ON r.rma_number = l.rma_number "
            "WHERE r.order_number = ? AND r.status NOT IN ('rejected', 'cancelled') GROUP BY l.line_ref",
            (order_number,),
        ).fetchall()
    )


def _order(conn: sqlite3.Connection, number: str) -> Order | None:
    rows = _rows(conn, "SELECT * FROM orders WHERE number = ?", (number,))
    if not rows:
        return None
    o = rows[0]
    c = _rows(conn, "SELECT * FROM customers WHERE reference = ?", (o["customer"],))[0]
    if o["customer"] == _GUEST_CUSTOMER:  # a guest is who the order says
        c.update(name=o["contact_name"], email=o["contact_email"], phone=o["contact_phone"])
    if o["ship_street"]:  # where an intake order goes
        c.update(
            street=o["ship_street"], postal_code=o["ship_postal_code"], city=o["ship_city"], country=o["ship_country"]
        )
    returned = _returned(conn, number)
    invoiced = o["invoice"] == "invoiced"
    lines = []
    for r in _rows(
        conn,
        "SELECT l.*, p.name FROM order_lines l JOIN products p ON p.sku = l.sku "
        "WHERE l.order_number = ? ORDER BY l.position",
        (number,),
    ):
        unit_price = Decimal(r["unit_price"])
        lines.append(
            OrderLine(
                line_ref=r["ref"],
                sku=r["sku"],
                description=r["name"],
                quantity=r["quantity"],
                shipped_quantity=r["shipped"],
                invoiced_quantity=r["quantity"] if invoiced else 0,
                returned_quantity=returned.get(r["ref"], 0),
                unit_price=unit_price,
                line_total=round_money(unit_price * r["quantity"]),
            )
        )
    shipments = []
    for s in _rows(conn, "SELECT * FROM shipments WHERE order_number = ? ORDER BY position", (number,)):
        shipments.append(
            Shipment(
                shipment_number=s["number"],
                state=s["state"],
                shipped_on=date.fromisoformat(s["shipped_on"]) if s["shipped_on"] else None,
                tracking_reference=s["tracking"],
                lines=[
                    ShipmentLine(sku=sku, quantity=qty)
                    for sku, qty in conn.execute(
                        "SELECT sku, quantity FROM shipment_lines WHERE shipment_number = ?", (s["number"],)
                    )
                ],
            )
        )
    total = sum((line.line_total for line in lines), Decimal("0.00"))
    status, invoice_state, payment_state = order_status(
        [(line.quantity, line.shipped_quantity, line.invoiced_quantity) for line in lines],
        cancelled=o["state"] == "cancelled",
        paid=total if o["payment"] == "paid" else Decimal(0),
        total=total,
    )
    address = (
        Address(street=c["street"], postal_code=c["postal_code"], city=c["city"], country=c["country"])
        if c["street"]
        else None
    )
    return Order(
        order_number=o["number"],
        external_ref=o["external_ref"],
        status=status,
        ordered_on=date.fromisoformat(o["ordered_on"]),
        currency=o["currency"],
        total_amount=total,
        invoice_state=invoice_state,
        payment_state=payment_state,
        customer=Customer(
            reference=c["reference"], name=c["name"], email=c["email"], phone=c["phone"], address=address
        ),
        lines=lines,
        shipments=shipments,
        as_of=now(),
    )


def _return(conn: sqlite3.Connection, rma_number: str) -> ReturnAuthorization | None:
    rows = _rows(conn, "SELECT * FROM returns WHERE rma_number = ?", (rma_number,))
    if not rows:
        return None
    r = rows[0]
    lines = [
        ReturnLine(
            line_ref=line_ref,
            sku=sku,
            quantity=quantity,
            reason=reason,
            unit_price=Decimal(unit_price),
            refund_amount=round_money(Decimal(unit_price) * quantity),
        )
        for line_ref, sku, quantity, reason, unit_price in conn.execute(
            "SELECT line_ref, sku, quantity, reason, unit_price FROM return_lines WHERE rma_number = ? "
            "ORDER BY position",
            (rma_number,),
        )
    ]
    return ReturnAuthorization(
        rma_number=r["rma_number"],
        order_number=r["order_number"],
        status=r["status"],
        created_at=datetime.fromisoformat(r["created_at"]),
        lines=lines,
        refund_estimate=RefundEstimate(
            currency=r["currency"], amount=sum((line.refund_amount for line in lines), Decimal("0.00"))
        ),
    )


def _create_return(conn: sqlite3.Connection, request: ReturnRequest, token: IdempotencyToken) -> ReturnOutcome:
    # BEGIN IMMEDIATE takes the write lock first, so the key lookup, the over-return check and
    # the insert are one atomic step across every process sharing the file.
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute(
            "SELECT rma_number, fingerprint FROM returns WHERE idempotency_key = ?", (token.key,)
        ).fetchone()
        if found is not None:
            conn.execute("ROLLBACK")
            return _replay(conn, found[0], found[1], token)
        order = _order(conn, request.order_number)
        if order is None:
            raise NotFound("order", request.order_number)
        planned = plan_return(request, order)
        (count,) = conn.execute("SELECT COUNT(*) FROM returns").fetchone()
        rma_number = f"RMA-{count + 1:06d}"
        conn.execute(
            "INSERT INTO returns VALUES (?, ?, 'authorized', ?, ?, ?, ?)",
            (rma_number, order.order_number, now().isoformat(), token.key, token.fingerprint, order.currency),
        )
        conn.executemany(
            "INSERT INTO return_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    rma_number,
                    i,
                    p.order_line.line_ref,
                    p.order_line.sku,
                    p.quantity,
                    p.reason,
                    p.comment,
                    str(p.order_line.unit_price),
                )
                for i, p in enumerate(planned)
            ],
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    rma = _return(conn, rma_number)
    assert rma is not None
    return ReturnOutcome(authorization=rma, replayed=False)


def _replay(conn: sqlite3.Connection, rma_number: str, fingerprint: str, token: IdempotencyToken) -> ReturnOutcome:
    if fingerprint != token.fingerprint:
        raise Rejected(
            "idempotency-key-reused",
            f"Idempotency-Key was already used for a different request (return {rma_number})",
            field="Idempotency-Key",
        )
    rma = _return(conn, rma_number)
    assert rma is not None
    return ReturnOutcome(authorization=rma, replayed=True)


def _create_order(
    conn: sqlite3.Connection, request: OrderIntakeRequest, token: IdempotencyToken, currency: str
) -> OrderOutcome:
    # As for returns: the key lookup, the checks and the insert are one step across processes.
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute(
            "SELECT number, fingerprint FROM orders WHERE idempotency_key = ?", (token.key,)
        ).fetchone()
        if found is not None:
            conn.execute("ROLLBACK")
            return _replay_order(found[0], found[1], token)
        _check_currency(request.currency, currency)
        customer = request.customer or _GUEST_CUSTOMER
        if request.customer is None:
            conn.execute(
                "INSERT OR IGNORE INTO customers (reference, name) VALUES (?, 'Storefront guest')", (customer,)
            )
        else:
            _customer_price_list(conn, request.customer)  # unknown-customer
        warehouses = _line_warehouses(conn, request)
        (last,) = conn.execute(
            "SELECT MAX(CAST(SUBSTR(number, 4) AS INTEGER)) FROM orders WHERE number LIKE 'SO-%'"
        ).fetchone()
        number = f"SO-{(last or 1000) + 1}"
        contact, address = request.contact, request.shipping_address
        conn.execute(
            "INSERT INTO orders (number, external_ref, customer, ordered_on, warehouse, state, invoice, payment, "
            "currency, idempotency_key, fingerprint, contact_name, contact_email, contact_phone, ship_street, "
            "ship_postal_code, ship_city, ship_country) "
            "VALUES (?, ?, ?, ?, ?, 'open', 'none', 'unpaid', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                number,
                request.external_ref,
                customer,
                now().date().isoformat(),
                warehouses[0],
                currency,
                token.key,
                token.fingerprint,
                contact.name,
                contact.email,
                contact.phone,
                address.street,
                address.postal_code,
                address.city,
                address.country,
            ),
        )
        conn.executemany(
            "INSERT INTO order_lines (order_number, ref, position, sku, quantity, unit_price, shipped, warehouse) "
            "VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
            [
                (number, str(i + 1), i, line.sku, line.quantity, str(round_money(line.unit_price)), warehouses[i])
                for i, line in enumerate(request.lines)
            ],
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return OrderOutcome(order_number=number, replayed=False)


def _line_warehouses(conn: sqlite3.Connection, request: OrderIntakeRequest) -> list[str]:
    """Each line's warehouse: the one it names, else the first that can ship all of it, else the
    first. ``Rejected`` for an unknown or unsalable SKU and an unknown warehouse."""
    codes = _known_warehouses(conn, None)
    stock = _availability(conn, sorted({line.sku for line in request.lines}), None)
    atp = {(item.sku, w.warehouse): w.available_to_promise for item in stock.items for w in item.warehouses}
    chosen: list[str] = []
    for index, line in enumerate(request.lines):
        product = _product(conn, line.sku)
        if product is None:
            raise Rejected("unknown-sku", f"SKU {line.sku!r} is unknown", field=f"lines[{index}].sku")
        if not product["salable"]:
            raise Rejected("not-salable", f"SKU {line.sku!r} is not for sale", field=f"lines[{index}].sku")
        if line.warehouse is not None and line.warehouse not in codes:
            raise Rejected(
                "unknown-warehouse", f"warehouse {line.warehouse!r} is unknown", field=f"lines[{index}].warehouse"
            )
        warehouse = line.warehouse or next(
            (code for code in codes if atp.get((line.sku, code), 0) >= line.quantity), codes[0]
        )
        atp[(line.sku, warehouse)] = atp.get((line.sku, warehouse), 0) - line.quantity
        chosen.append(warehouse)
    return chosen


def _replay_order(number: str, fingerprint: str, token: IdempotencyToken) -> OrderOutcome:
    if fingerprint != token.fingerprint:
        raise Rejected(
            "idempotency-key-reused",
            f"Idempotency-Key was already used for a different request (order {number})",
            field="Idempotency-Key",
        )
    return OrderOutcome(order_number=number, replayed=True)


# -- seeding ----------------------------------------------------------------------------------


def _seed_once(conn: sqlite3.Connection, data: Dataset) -> None:
    """Create and fill the schema unless a previous start (or another worker) did."""
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT value FROM meta WHERE key = 'dataset'").fetchone() is not None:
            _upgrade(conn)
            conn.execute("COMMIT")
            return
        for statement in _SCHEMA.split(";"):
            if statement.strip() and "meta" not in statement:
                conn.execute(statement)
        conn.executemany("INSERT INTO warehouses VALUES (?, ?)", [(w.code, w.name) for w in data.warehouses])
        conn.executemany(
            "INSERT INTO products VALUES (?, ?, ?, ?, ?)",
            [(p.sku, p.name, p.unit, str(p.list_price), int(p.salable)) for p in data.products],
        )
        conn.executemany(
            "INSERT INTO stock VALUES (?, ?, ?)",
            [(p.sku, wh, qty) for p in data.products for wh, qty in p.on_hand.items()],
        )
        conn.executemany("INSERT INTO price_lists VALUES (?, ?)", [(pl.code, pl.name) for pl in data.price_lists])
        conn.executemany(
            "INSERT INTO price_rules VALUES (?, ?, ?, ?, ?, ?)",
            [
                (pl.code, i, r.id, r.sku, r.min_quantity, str(r.discount_percent))
                for pl in data.price_lists
                for i, r in enumerate(pl.rules)
            ],
        )
        conn.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    c.reference,
                    c.name,
                    c.email,
                    c.phone,
                    c.address.street if c.address else None,
                    c.address.postal_code if c.address else None,
                    c.address.city if c.address else None,
                    c.address.country if c.address else None,
                    c.price_list,
                )
                for c in data.customers
            ],
        )
        for o in data.orders:
            conn.execute(
                "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    o.number,
                    o.external_ref,
                    o.customer,
                    o.ordered_on,
                    o.warehouse,
                    o.state,
                    o.invoice,
                    o.payment,
                    data.currency,
                ),
            )
            conn.executemany(
                "INSERT INTO order_lines VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (o.number, li.ref, i, li.sku, li.quantity, str(li.unit_price), li.shipped)
                    for i, li in enumerate(o.lines)
                ],
            )
            for i, s in enumerate(o.shipments):
                conn.execute(
                    "INSERT INTO shipments VALUES (?, ?, ?, ?, ?, ?)",
                    (s.number, o.number, i, s.state, s.shipped_on, s.tracking),
                )
                conn.executemany(
                    "INSERT INTO shipment_lines VALUES (?, ?, ?)", [(s.number, sl.sku, sl.quantity) for sl in s.lines]
                )
        _upgrade(conn)
        conn.execute("INSERT INTO meta VALUES ('dataset', ?)", (dataset_digest(),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _upgrade(conn: sqlite3.Connection) -> None:
    """Add ``_ADDED_COLUMNS`` where missing (a file seeded by an earlier version), in the
    caller's transaction, and the index that makes an order's idempotency key unique."""
    for table, columns in _ADDED_COLUMNS.items():
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for column in columns:
            if column.split()[0] not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS orders_idempotency_key ON orders (idempotency_key)")
