"""``/metrics`` of ``erp-gateway worker``, which has no HTTP stack of its own: prometheus_client's
WSGI exposition in a thread, behind the same scrape token as the API's ``/metrics``
(``gateway.observability.endpoint``): without it a 401 problem, any other path a 404."""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from gateway.problems import PROBLEM_BASE, PROBLEM_MEDIA_TYPE

__all__ = ["MetricsServer"]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log line per scrape."""


class MetricsServer:
    """Serves ``registry`` at ``http://host:port/metrics`` until ``close``. Raises ``OSError``
    when the port cannot be bound."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int, token: str) -> None:
        exposition = make_wsgi_app(registry)
        expected = f"Bearer {token}".encode()

        def app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != "/metrics":
                return _problem(start, 404, "not-found", "Not found", "only /metrics is served here")
            sent = str(environ.get("HTTP_AUTHORIZATION", "")).encode()
            if token and not hmac.compare_digest(sent, expected):
                return _problem(start, 401, "unauthorized", "Unauthorized", "/metrics needs the scrape token")
            answer: Iterable[bytes] = exposition(environ, start)
            return answer

        self._server = make_server(host, port, app, server_class=_Server, handler_class=_Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _problem(start: Callable[..., Any], status: int, slug: str, title: str, detail: str) -> list[bytes]:
    body = json.dumps({"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}).encode()
    headers = [("Content-Type", PROBLEM_MEDIA_TYPE), ("Content-Length", str(len(body)))]
    if status == 401:
        headers.append(("WWW-Authenticate", 'Bearer realm="metrics"'))
    start(f"{status} {title}", headers)
    return [body]
