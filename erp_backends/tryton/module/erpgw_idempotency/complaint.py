# mypy: ignore-errors
# (a Tryton module: trytond is installed in Tryton's environment, not the gateway's)
"""``sale.complaint.reference`` unique where set: the database refuses a second return per key."""

from sql import Null
from sql.operators import Equal
from trytond.model import Exclude
from trytond.pool import PoolMeta


class Complaint(metaclass=PoolMeta):
    __name__ = "sale.complaint"

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        # PostgreSQL: EXCLUDE USING btree (reference WITH =) WHERE reference IS NOT NULL, which
        # makes a concurrent insert of the same key wait for the first transaction, then fail.
        # SQLite: CREATE UNIQUE INDEX ... WHERE reference IS NOT NULL.
        cls._sql_constraints += [
            (
                "reference_unique",
                Exclude(t, (t.reference, Equal), where=t.reference != Null),
                "erpgw_idempotency.msg_reference_unique",
            ),
        ]
