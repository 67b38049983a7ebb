"""Writes as use-cases: each owns its idempotency record in front of the ERP port (reads call the port)."""
