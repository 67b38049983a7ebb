"""Policies that wrap an ERP backend: caching, throttling, circuit breaking (see chain.py)."""
