"""The Tryton 8.2 adapter: the ERP port over JSON-RPC (session, context, errors in ``rpc.py``).

``backend.py`` answers the contract operations, ``orders.py`` reads sales, ``returns.py``
files returns as sale complaints; ``settings.py`` holds ``ERPGW_TRYTON__*``.
"""

from erp_backends.tryton.backend import TrytonBackend
from erp_backends.tryton.settings import TrytonSettings

__all__ = ["TrytonBackend", "TrytonSettings"]
