"""erpgw_idempotency: one sale complaint (``reference``) and one sale (``idempotency_key``) per
Idempotency-Key, each unique when set.

A Tryton 8.2 module, not part of the gateway's runtime: installed into trytond's environment
(``pip install`` of this directory) and activated with ``trytond-admin -u erpgw_idempotency``.
Its classes are registered by ``tryton.cfg``. See docs/tryton.md.
"""
