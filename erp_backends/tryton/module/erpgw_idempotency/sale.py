# mypy: ignore-errors
# (a Tryton module: trytond is installed in Tryton's environment, not the gateway's)
"""``sale.sale.idempotency_key`` unique where set: the database refuses a second order per key.

The key and the fingerprint of the request it came with are set when the sale is created
(read-only afterwards) and cleared by "copy", so duplicating a sale in the client still works.
"""

from sql import Null
from sql.operators import Equal
from trytond.model import Exclude, fields
from trytond.pool import PoolMeta
from trytond.pyson import Eval

_SET_ONCE = {"readonly": Eval("id", -1) >= 0}


class Sale(metaclass=PoolMeta):
    __name__ = "sale.sale"

    idempotency_key = fields.Char(
        "Idempotency Key", strip=False, states=_SET_ONCE, help="The erp-gateway Idempotency-Key that created the sale."
    )
    idempotency_fingerprint = fields.Char(
        "Idempotency Fingerprint", strip=False, states=_SET_ONCE, help="A digest of the request that key came with."
    )

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        # As for complaints (complaint.py): an exclusion constraint on PostgreSQL, a partial
        # unique index on SQLite; a concurrent insert of the same key waits, then fails.
        cls._sql_constraints += [
            (
                "idempotency_key_unique",
                Exclude(t, (t.idempotency_key, Equal), where=t.idempotency_key != Null),
                "erpgw_idempotency.msg_idempotency_key_unique",
            ),
        ]

    @classmethod
    def copy(cls, sales, default=None):
        default = {} if default is None else default.copy()
        default.setdefault("idempotency_key", None)
        default.setdefault("idempotency_fingerprint", None)
        return super().copy(sales, default=default)
