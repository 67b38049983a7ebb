"""Seed a fresh Tryton 8.2 database from erp_backends/dataset/retail.toml.

Runs INSIDE the Tryton venv (needs trytond + proteus), in-process against the
SQLite database that ``trytond-admin`` just initialised:

    TRYTOND_DATABASE_URI=sqlite:// TRYTOND_DATABASE__PATH=<dir> \
        <venv>/bin/python tryton_seed.py --config <conf> --database <db> \
        --dataset retail.toml

It is run exactly once per fresh database (not idempotent: a second run fails
loudly on duplicate codes). What it builds, so that adapters can rely on it:

- company party ``company``, currency EUR (2 digits, rounding 0.01), minimal
  chart of accounts, fiscal year 2026 with monthly periods, a "Direct" payment
  term, a cash journal and an invoice payment method "Cash";
- warehouses (``stock.location`` type warehouse) with ``code`` EAST and WEST,
  each with its own input/output/storage locations;
- one product per SKU: ``product.product.code == sku`` (template ``code`` =
  sku, empty ``suffix_code``; Tryton composes the variant code as
  template.code + suffix_code), unit "Unit", list price, cost price = 50 % of
  list price, ``salable`` from the file;
- stock: one inventory per warehouse dated 2026-10-01 with on_hand + the
  quantities that the seeded shipments later take out of that warehouse;
- customers: ``party.party.code`` = reference, email/phone contact mechanisms,
  one address, ``sale_price_list``; the party ``GUEST_PARTY_CODE`` that guest orders
  (no customer) are sold to, each with its own shipment address;
- price lists: ``product.price_list.name`` = the list code (e.g. ACME-2026),
  price = list price, one line per rule in the file's order with formula
  ``unit_price * (1 - <discount>/100)``;
- sales numbered by the sale sequence (prefix ``SO-``), shipments by the
  shipment sequence (prefix ``SH-``), complaints by the complaint sequence
  (prefix ``RMA-``); a complaint type "Return authorization" (origin
  sale.sale) for returns.
"""

import argparse
import datetime as dt
import os
import sys
import tomllib
from collections import defaultdict
from decimal import Decimal

INVENTORY_DATE = dt.date(2026, 10, 1)
FISCAL_YEAR = (dt.date(2026, 1, 1), dt.date(2026, 12, 31))
COMPLAINT_TYPE_NAME = "Return authorization"
#: ``TrytonSettings.guest_party``'s default.
GUEST_PARTY_CODE = "GUEST"
COUNTRY_NAMES = {"DE": "Germany", "SE": "Sweden"}


def log(*args):
    print("[seed]", *args, file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--database", required=True)
    p.add_argument("--dataset", required=True)
    return p.parse_args()


def d(value):
    return dt.date.fromisoformat(value)


def main():
    args = parse_args()
    with open(args.dataset, "rb") as fh:
        data = tomllib.load(fh)
    assert data.get("version") == 1, "unsupported dataset version"

    os.environ.setdefault("TRYTOND_DATABASE_URI", "sqlite://")
    from proteus import Model
    from proteus import config as pconfig

    config = pconfig.set_trytond(database=args.database, config_file=args.config)
    # Shipment/sale warnings (e.g. quantity differs from the sale line on the
    # partial shipment) are expected while seeding.
    config.skip_warning = True

    from trytond.modules.account.tests.tools import create_chart, create_fiscalyear, get_accounts
    from trytond.modules.account_invoice.tests.tools import create_payment_term, set_fiscalyear_invoice_sequences
    from trytond.modules.company.tests.tools import create_company

    # ---------------------------------------------------------------- basics
    Currency = Model.get("currency.currency")
    currency_code = data["currency"]
    currencies = Currency.find([("code", "=", currency_code)])
    if currencies:
        (currency,) = currencies
    else:
        currency = Currency(name="Euro", code=currency_code, symbol="€", digits=2, rounding=Decimal("0.01"))
        currency.save()
    log("currency", currency.code)

    Country = Model.get("country.country")
    countries = {}
    needed = {c["address"]["country"] for c in data["customers"] if c.get("address")}
    for code in sorted(needed):
        found = Country.find([("code", "=", code)])
        if found:
            countries[code] = found[0]
        else:
            country = Country(name=COUNTRY_NAMES.get(code, code), code=code)
            country.save()
            countries[code] = country

    Party = Model.get("party.party")
    company_party = Party(name=data["company"])
    company_party.save()  # must be saved before create_company
    create_company(party=company_party, currency=currency)
    config = pconfig.get_config()
    Company = Model.get("company.company")
    (company,) = Company.find()
    log("company", company.rec_name)

    create_chart(company)
    accounts = get_accounts(company)
    fiscalyear = set_fiscalyear_invoice_sequences(create_fiscalyear(company, today=FISCAL_YEAR))
    fiscalyear.click("create_period")
    payment_term = create_payment_term()
    payment_term.save()

    Journal = Model.get("account.journal")
    PaymentMethod = Model.get("account.invoice.payment.method")
    (cash_journal,) = Journal.find([("type", "=", "cash")])
    payment_method = PaymentMethod(
        name="Cash", journal=cash_journal, credit_account=accounts["cash"], debit_account=accounts["cash"]
    )
    payment_method.save()
    log("accounting ready")

    # ------------------------------------------------------------- sequences
    SaleConfig = Model.get("sale.configuration")
    StockConfig = Model.get("stock.configuration")
    sale_config = SaleConfig(1)
    seq = sale_config.sale_sequence
    seq.prefix = "SO-"
    seq.number_next = int(data["orders"][0]["number"].split("-")[-1])
    seq.save()
    cseq = sale_config.complaint_sequence
    cseq.prefix = "RMA-"
    cseq.number_next = 1
    cseq.save()
    stock_config = StockConfig(1)
    sseq = stock_config.shipment_out_sequence
    first_shipment = min(int(s["number"].split("-")[-1]) for o in data["orders"] for s in o["shipments"])
    sseq.prefix = "SH-"
    sseq.number_next = first_shipment
    sseq.save()

    # trytond-cron is not run by the harness; this daily cron exists so the
    # harness can call its run_once button when the golden copy is older
    # than today: open shipments planned before today would otherwise drop
    # out of forecast_quantity (Tryton counts draft moves in the forecast
    # only from today on).
    Cron = Model.get("ir.cron")
    Cron(method="stock.shipment.out|reschedule", interval_number=1, interval_type="days").save()

    ComplaintType = Model.get("sale.complaint.type")
    IrModel = Model.get("ir.model")
    (sale_model,) = IrModel.find([("name", "=", "sale.sale")])
    ComplaintType(name=COMPLAINT_TYPE_NAME, origin=sale_model).save()

    # ------------------------------------------------------------ warehouses
    Location = Model.get("stock.location")
    wh_cfg = data["warehouses"]
    (default_wh,) = Location.find([("type", "=", "warehouse")])
    warehouses = {}
    first = wh_cfg[0]
    default_wh.code = first["code"]
    default_wh.name = first["name"]
    default_wh.save()
    for loc, suffix in (
        (default_wh.input_location, "IN"),
        (default_wh.output_location, "OUT"),
        (default_wh.storage_location, "STO"),
    ):
        loc.code = "%s-%s" % (first["code"], suffix)
        loc.save()
    warehouses[first["code"]] = default_wh
    lost_found = default_wh.lost_found_location
    if not lost_found:
        (lost_found,) = Location.find([("type", "=", "lost_found")], limit=1)
    for w in wh_cfg[1:]:
        inp = Location(name="%s input" % w["name"], code="%s-IN" % w["code"], type="storage")
        inp.save()
        out = Location(name="%s output" % w["name"], code="%s-OUT" % w["code"], type="storage")
        out.save()
        sto = Location(name="%s storage" % w["name"], code="%s-STO" % w["code"], type="storage")
        sto.save()
        wh = Location(
            name=w["name"],
            code=w["code"],
            type="warehouse",
            input_location=inp,
            output_location=out,
            storage_location=sto,
        )
        wh.lost_found_location = lost_found
        wh.save()
        warehouses[w["code"]] = wh
    log("warehouses", sorted(warehouses))

    # -------------------------------------------------------------- products
    Uom = Model.get("product.uom")
    (unit,) = Uom.find([("name", "=", "Unit")])
    Category = Model.get("product.category")
    account_category = Category(
        name="Retail goods", accounting=True, account_revenue=accounts["revenue"], account_expense=accounts["expense"]
    )
    account_category.save()
    Template = Model.get("product.template")
    products = {}
    for p in data["products"]:
        assert p["unit"] == "unit", p
        tpl = Template()
        tpl.name = p["name"]
        tpl.code = p["sku"]
        tpl.default_uom = unit
        tpl.type = "goods"
        tpl.salable = bool(p["salable"])
        tpl.list_price = Decimal(p["list_price"])
        tpl.cost_price = (Decimal(p["list_price"]) / 2).quantize(Decimal("0.0001"))
        tpl.account_category = account_category
        tpl.save()
        (product,) = tpl.products
        assert product.code == p["sku"], (product.code, p["sku"])
        products[p["sku"]] = product
    log("products", len(products))

    # ----------------------------------------------------------------- stock
    shipped_out = defaultdict(int)  # (warehouse, sku) -> qty leaving
    for o in data["orders"]:
        if o["state"] == "cancelled":
            continue
        for line in o["lines"]:
            shipped_out[(o["warehouse"], line["sku"])] += line["shipped"]
    Inventory = Model.get("stock.inventory")
    for code, wh in warehouses.items():
        inventory = Inventory(location=wh.storage_location, date=INVENTORY_DATE)
        for p in data["products"]:
            qty = p["on_hand"].get(code, 0) + shipped_out[(code, p["sku"])]
            if qty:
                inventory.lines.new(product=products[p["sku"]], quantity=float(qty))
        inventory.click("confirm")
        assert inventory.state == "done"
    log("inventories done")

    # ----------------------------------------------------------- price lists
    PriceList = Model.get("product.price_list")
    price_lists = {}
    for pl in data["price_lists"]:
        price_list = PriceList(name=pl["code"], price="list_price")
        for seq_no, rule in enumerate(pl["rules"], 1):
            line = price_list.lines.new()
            line.sequence = seq_no * 10
            if rule.get("sku"):
                line.product = products[rule["sku"]]
            line.quantity = float(rule["min_quantity"])
            line.formula = "unit_price * (1 - %s / 100)" % (Decimal(rule["discount_percent"]))
        price_list.save()
        price_lists[pl["code"]] = price_list
    log("price lists", sorted(price_lists))

    # ------------------------------------------------------------- customers
    customers = {}
    for c in data["customers"]:
        party = Party(name=c["name"], code=c["reference"])
        if c.get("email"):
            party.contact_mechanisms.new(type="email", value=c["email"])
        if c.get("phone"):
            party.contact_mechanisms.new(type="phone", value=c["phone"])
        addr = c.get("address")
        if addr:
            (address,) = party.addresses  # a party starts with one address
            address.street_unstructured = addr["street"]
            address.postal_code = addr["postal_code"]
            address.city = addr["city"]
            address.country = countries[addr["country"]]
        if c.get("price_list"):
            party.sale_price_list = price_lists[c["price_list"]]
        party.save()
        assert party.code == c["reference"], (party.code, c["reference"])
        customers[c["reference"]] = party
    Party(name="Storefront guest", code=GUEST_PARTY_CODE).save()
    log("customers", len(customers), "and the guest party")

    # ---------------------------------------------------------------- orders
    Sale = Model.get("sale.sale")
    sales = {}
    # Quote all orders first, in file order: the sale sequence gives
    # SO-1001, SO-1002, ... exactly.
    for o in data["orders"]:
        sale = Sale()
        sale.party = customers[o["customer"]]
        sale.reference = o["external_ref"]
        sale.sale_date = d(o["ordered_on"])
        sale.warehouse = warehouses[o["warehouse"]]
        sale.payment_term = payment_term
        sale.currency = currency
        sale.shipment_method = "order"
        sale.invoice_method = "manual" if o["invoice"] == "none" else "order"
        for line in o["lines"]:
            sl = sale.lines.new()
            if str(line["ref"]).isdigit():
                sl.sequence = int(line["ref"])  # the storefront line ref
            sl.product = products[line["sku"]]
            sl.quantity = float(line["quantity"])
            sl.unit_price = Decimal(line["unit_price"])
        sale.click("quote")
        assert sale.number == o["number"], (sale.number, o["number"])
        sales[o["number"]] = sale
    log("sales quoted", sorted(sales))

    # Confirm orders with listed shipments first, in the order of their
    # shipment numbers, so the shipment sequence yields the file's numbers;
    # orders without any listed shipment are confirmed afterwards (their
    # waiting shipment takes the next free number).
    def first_shipment_no(o):
        nums = [int(s["number"].split("-")[-1]) for s in o["shipments"]]
        return min(nums) if nums else float("inf")

    Shipment = Model.get("stock.shipment.out")
    to_invoice = []
    for o in sorted(data["orders"], key=first_shipment_no):
        sale = sales[o["number"]]
        if o["state"] == "cancelled":
            continue
        sale.click("confirm")
        sale.reload()
        assert sale.state == "processing", (o["number"], sale.state)
        ship_shipments(o, sale, Shipment, products)
        if o["invoice"] == "invoiced":
            to_invoice.append(o)
    # Customer invoice numbers must follow invoice dates: post in date order.
    for o in sorted(to_invoice, key=invoice_date_of):
        invoice_sale(o, sales[o["number"]], payment_method)

    for o in data["orders"]:
        if o["state"] == "cancelled":
            sale = sales[o["number"]]
            sale.click("cancel")
            assert sale.state == "cancelled"
    log("orders done")

    # Cross-check what ended in the database (the harness re-checks the
    # stock and prices over JSON-RPC against a running server).
    for o in data["orders"]:
        sale = sales[o["number"]]
        sale.reload()
        log(
            o["number"],
            sale.state,
            "shipment",
            sale.shipment_state,
            "invoice",
            sale.invoice_state,
            [(s.number, s.state) for s in sale.shipments],
        )
    log("seed complete")


def ship_shipments(o, sale, Shipment, products):
    """Ship what the file says left, leave the rest waiting."""
    for spec in sorted(o["shipments"], key=lambda s: int(s["number"].split("-")[-1])):
        sale.reload()
        open_shipments = [s for s in sale.shipments if s.state not in ("done", "cancelled")]
        assert len(open_shipments) == 1, (o["number"], open_shipments)
        (shipment,) = open_shipments
        assert shipment.number == spec["number"], (shipment.number, spec["number"])
        wanted = defaultdict(int)
        for line in spec["lines"]:
            wanted[line["sku"]] += line["quantity"]
        if spec["state"] == "pending":
            remaining = defaultdict(int)
            for m in shipment.outgoing_moves:
                remaining[m.product.code] += int(m.quantity)
            assert dict(remaining) == dict(wanted), (spec["number"], dict(remaining), dict(wanted))
            # "Still being picked": reserve the stock (state assigned).
            # Stock stays on hand in the warehouse, the quantity is only
            # committed (it shows in forecast_quantity). Sales whose
            # shipment is not listed at all keep it in state waiting.
            shipment.click("assign_try")
            shipment.reload()
            if shipment.state != "assigned":
                shipment.click("assign_force")
                shipment.reload()
            assert shipment.state == "assigned", shipment.state
            continue
        assert spec["state"] == "shipped", spec
        # Partial shipment: lower the inventory (pick) moves to what left;
        # at packing Tryton syncs the outgoing moves to the picked
        # quantities, and the sale process then creates a new shipment
        # (the backorder) for the rest.
        for move in shipment.inventory_moves:
            qty = wanted.get(move.product.code, 0)
            if qty != move.quantity:
                move.quantity = float(qty)
                move.save()
        shipment.reload()
        shipment.effective_date = d(spec["shipped_on"])
        if spec.get("tracking"):
            shipment.reference = spec["tracking"]
        shipment.save()
        shipment.click("assign_force")
        shipment.click("pick")
        shipment.click("pack")
        shipment.click("ship")
        shipment.click("do")
        shipment.reload()
        assert shipment.state == "done", shipment.state
        shipped = defaultdict(int)
        for m in shipment.outgoing_moves:
            if m.state == "done":
                shipped[m.product.code] += int(m.quantity)
        assert dict(shipped) == dict(wanted), (spec["number"], dict(shipped), dict(wanted))
        # effective_date is set to today by `do` when empty; force the
        # dataset date on the shipment and its done moves.
        fix_dates(shipment, d(spec["shipped_on"]))


def fix_dates(shipment, date):
    from proteus import Model

    Move = Model.get("stock.move")
    Shipment = Model.get("stock.shipment.out")
    if shipment.effective_date != date:
        Shipment.write([shipment.id], {"effective_date": date}, shipment._context)
    moves = [m.id for m in shipment.moves if m.effective_date != date]
    if moves:
        Move.write(moves, {"effective_date": date}, shipment._context)


def invoice_date_of(o):
    "Invoice on the last shipping day (or the order day if nothing left)."
    dates = [d(s["shipped_on"]) for s in o["shipments"] if s["state"] == "shipped"]
    return max(dates) if dates else d(o["ordered_on"])


def invoice_sale(o, sale, payment_method):
    sale.reload()
    invoices = [i for i in sale.invoices if i.state == "draft"]
    assert len(invoices) == 1, (o["number"], sale.invoices)
    (invoice,) = invoices
    invoice_date = invoice_date_of(o)
    invoice.invoice_date = invoice_date
    invoice.click("post")
    assert invoice.state == "posted", invoice.state
    if o["payment"] == "paid":
        pay = invoice.click("pay")
        pay.form.payment_method = payment_method
        pay.form.date = invoice_date
        pay.execute("choice")
        invoice.reload()
        assert invoice.state == "paid", invoice.state


if __name__ == "__main__":
    main()
