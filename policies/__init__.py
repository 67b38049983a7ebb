"""Policies that wrap an ERP backend and look like one, in the order ``chain.py`` states: caching
(package), retry, circuit breaking, the call budget, timeouts, observation; quotas (per client,
used by the HTTP edge) and the shared-state port they all keep cross-worker state behind."""
