"""Versioned wire contracts shared by the gateway and every ERP backend.

A published version never breaks: new fields get defaults, an existing field never changes
type or meaning. Breaking changes go into a new package (`contracts.v2`).
"""
