"""ERP backends: the port every ERP is reached through (``port``, its errors, what each operation
is in ``operations``, calls as values in ``invocation``, decorators in ``wrapping``), the shared
business rules, and one adapter per ERP beside it (``sample``, ``tryton/``)."""
