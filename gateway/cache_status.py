"""``Cache-Status`` (RFC 9211) from the request's ``CallNotes``, which travel in the ASGI scope.

A route's call context and the hot path put ONE ``CallNotes`` per request in the scope's state;
the caching policy fills it through the call, the response-headers pass and the request metrics
read it. Nothing is kept in a contextvar, so a background task can never write into a request's.
"""

from __future__ import annotations

from typing import Any

from erp_backends.port import CallNotes

__all__ = ["CALL_NOTES", "cache_status", "call_notes", "notes_for"]

#: Key of the request's ``CallNotes`` in ``scope["state"]``.
CALL_NOTES = "erpgw.call_notes"


def notes_for(scope: Any) -> CallNotes:
    """The request's notes, made on first use (one per request, however many calls it makes)."""
    state = scope["state"]
    notes: CallNotes | None = state.get(CALL_NOTES)
    if notes is None:
        notes = state[CALL_NOTES] = CallNotes()
    return notes


def call_notes(scope: Any) -> CallNotes | None:
    """What the cache did for this request (None: no cached operation was called)."""
    notes: CallNotes | None = scope["state"].get(CALL_NOTES)
    return notes


def cache_status(notes: CallNotes) -> str | None:
    """The ``Cache-Status`` value, if the cache was consulted."""
    if notes.hits == 0 and notes.misses == 0 and notes.stale == 0:
        return None
    parts = ["erp-gateway"]
    if notes.misses == 0:
        parts.append("hit")
        if notes.ttl is not None:
            parts.append(f"ttl={int(notes.ttl)}")
        if notes.stale_if_error:
            parts.append('detail="stale-if-error"')
        elif notes.stale:
            parts.append('detail="stale-while-revalidate"')
    else:
        parts.append("fwd=miss" if notes.hits == 0 and notes.stale == 0 else "fwd=partial")
        parts.append("stored")
        if notes.collapsed:
            parts.append("collapsed")
    return "; ".join(parts)
