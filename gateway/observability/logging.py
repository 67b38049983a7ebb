"""Structured logs: one JSON object per line, with the request's correlation and trace IDs.

Configured once, by ``configure_logging`` (the CLI) and by gunicorn through ``gunicorn_log_config``
(same formatter, so master and workers write alike). The request being served is known through
``REQUEST_SCOPE`` (set by the request middleware); the IDs are read from it only when a record
is actually emitted, so disabled log levels cost nothing per request. Bearer tokens and JWTs that
slip into a message are masked as a last line of defence; nothing else about the request is logged.
"""

from __future__ import annotations

import contextvars
import logging
import logging.config
import re
from datetime import UTC, datetime
from typing import Any

import msgspec
from opentelemetry import trace

from gateway.correlation import correlation_id, traceparent

__all__ = ["REQUEST_SCOPE", "JsonFormatter", "configure_logging", "gunicorn_log_config"]

#: The ASGI scope of the request this task serves (None outside requests).
REQUEST_SCOPE: contextvars.ContextVar[Any] = contextvars.ContextVar("erpgw_request_scope", default=None)

_SECRETS = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_AUDIT_LOGGER = "erp_gateway.audit"
_encode = msgspec.json.Encoder().encode
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: Libraries that log one INFO line per outbound call.
_CHATTY = ("httpx", "httpcore")


def _mask(text: str) -> str:
    return _SECRETS.sub(lambda m: (m.group(1) or "") + "[redacted]", text)


def _ids() -> tuple[str | None, str | None, str | None]:
    """(correlation id, trace id, span id) of the current request, as far as known."""
    scope = REQUEST_SCOPE.get()
    cid = correlation_id(scope) if scope is not None else None
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        return cid, format(span.trace_id, "032x"), format(span.span_id, "016x")
    parent = traceparent(scope) if scope is not None else None
    # Tracing off: the caller's trace still ties these lines to its own spans.
    return cid, (parent[3:35] if parent else None), None


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "correlation_id", "trace_id", "span_id", "exc"}`` per line.

    Audit records (already JSON) are embedded as an object under ``audit``, not re-quoted.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
        }
        message = record.getMessage()
        if record.name == _AUDIT_LOGGER:
            try:
                out["audit"] = msgspec.json.decode(message)
            except msgspec.DecodeError:
                out["msg"] = _mask(message)
        else:
            out["msg"] = _mask(message)
        cid, trace_id, span_id = _ids()
        if cid is not None:
            out["correlation_id"] = cid
        if trace_id is not None:
            out["trace_id"] = trace_id
        if span_id is not None:
            out["span_id"] = span_id
        if record.exc_info:
            out["exc"] = _mask(self.formatException(record.exc_info))
        return _encode(out).decode("utf-8")


def _formatter_config(log_format: str) -> dict[str, Any]:
    if log_format == "json":
        return {"()": JsonFormatter}
    return {"format": _TEXT_FORMAT}


def gunicorn_log_config(level: str, log_format: str = "json") -> dict[str, Any]:
    """``logging.config.dictConfig`` for the whole process: root, gunicorn and uvicorn loggers."""
    handler = {"class": "logging.StreamHandler", "formatter": "gateway", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"gateway": _formatter_config(log_format)},
        "handlers": {"stderr": handler},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # The uvicorn worker copies gunicorn's handlers onto its own loggers: give them ours.
            "gunicorn.error": {"level": level, "handlers": ["stderr"], "propagate": False},
            # No handler: uvicorn, which copies these, then writes no access lines of its own;
            # the gateway writes them (``observability.access_log``), with route and client.
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
            **{name: {"level": "WARNING"} for name in _CHATTY},
        },
    }


def configure_logging(level: str, log_format: str = "json") -> None:
    """Set up logging for this process (replaces ``logging.basicConfig``)."""
    logging.config.dictConfig(gunicorn_log_config(level, log_format))
