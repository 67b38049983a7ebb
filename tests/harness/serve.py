"""``erp-gateway`` with the test harness's fault injection installed in every gunicorn worker.

``python -m tests.harness.serve serve --port P`` is ``erp-gateway serve --port P`` whose workers
wrap each bare adapter in ``tests.harness.faults.FaultInjectingBackend`` when
``ERPGW_FAULTS__CONTROL_FILE`` is set (and log calls to ``ERPGW_FAULTS__CALLS_LOG``). The
gateway itself knows neither variable: they are read and removed here, before its settings are
loaded, and the hook reaches the workers through ``gateway.cli.main(wrap_adapter=...)``.
"""

from __future__ import annotations

import os

from gateway.cli import main
from tests.harness.faults import BACKEND_ENV, CALLS_LOG_ENV, CONTROL_FILE_ENV, from_environment

if __name__ == "__main__":
    hook = from_environment()
    for name in (CONTROL_FILE_ENV, CALLS_LOG_ENV, BACKEND_ENV):
        os.environ.pop(name, None)
    raise SystemExit(main(wrap_adapter=hook))
