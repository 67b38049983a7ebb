"""The Tryton adapter's session and error edge, against a scripted JSON-RPC server (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from erp_backends.errors import ErpTimeout, ErpUnavailable, Rejected
from erp_backends.port import CallContext
from erp_backends.tryton import TrytonBackend, TrytonSettings
from gateway.bootstrap import build_adapter
from gateway.settings import Settings

CTX = CallContext(correlation_id="req-42", traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
SETTINGS = TrytonSettings(url="http://tryton.test", database="db", user="gw", password="s3cret-pw")


class FakeTryton:
    """Answers login, preferences and one search; ``expire`` invalidates every session once."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.logins = 0
        self.valid: set[str] = set()
        self.reply: Any = {"result": [1]}

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append((body["method"], dict(request.headers), body["params"]))
        if body["method"] == "common.db.login":
            self.logins += 1
            await asyncio.sleep(0.01)
            token = f"token-{self.logins}"
            self.valid = {token}
            return httpx.Response(200, json={"id": body["id"], "result": [7, token, None]})
        auth = request.headers.get("authorization", "")
        if not any(token in _decoded(auth) for token in self.valid):
            return httpx.Response(401)
        if body["method"] == "model.res.user.get_preferences":
            return httpx.Response(200, json={"result": {"company": 3, "companies": [3], "language": "fr", "x": 1}})
        if isinstance(self.reply, httpx.Response):
            return self.reply
        return httpx.Response(200, json={"id": body["id"], **self.reply})


def _decoded(auth: str) -> str:
    import base64

    return base64.b64decode(auth.removeprefix("Session ")).decode() if auth.startswith("Session ") else ""


def _backend(fake: FakeTryton) -> TrytonBackend:
    return TrytonBackend(SETTINGS, httpx.AsyncClient(transport=httpx.MockTransport(fake)), close_client=True)


async def test_logs_in_once_and_sends_correlation_headers_and_context() -> None:
    fake = FakeTryton()
    backend = _backend(fake)
    rpc = backend._rpc
    for _ in range(3):
        await rpc.call("model.x.search", [], ctx=CTX)
    await backend.aclose()
    assert fake.logins == 1
    calls = [(m, h, p) for m, h, p in fake.requests if m == "model.x.search"]
    assert len(calls) == 3
    for _, headers, params in calls:
        assert headers["x-request-id"] == "req-42"
        assert headers["traceparent"] == CTX.traceparent
        assert params[-1] == {"company": 3, "companies": [3], "language": "en"}  # preferences, our language
    sent = json.dumps([p for m, _, p in fake.requests if m != "common.db.login"])
    assert "s3cret-pw" not in sent  # the password goes to login only


async def test_concurrent_401s_log_in_once() -> None:
    fake = FakeTryton()
    backend = _backend(fake)
    await backend._rpc.call("model.x.search", [])
    fake.valid = set()  # the server restarted: every session is gone
    await asyncio.gather(*(backend._rpc.call("model.x.search", []) for _ in range(10)))
    await backend.aclose()
    assert fake.logins == 2


@pytest.mark.parametrize(
    ("reply", "error", "code"),
    [
        ({"error": ["UserError", ["You can not do that.", "", None]]}, Rejected, "rejected-by-erp"),
        ({"error": ["UserWarning", ["w1", "Are you sure?", ""]]}, Rejected, "rejected-by-erp"),
        ({"error": ["'no.such.model'", ""]}, ErpUnavailable, "erp-unavailable"),
        (httpx.Response(502), ErpUnavailable, "erp-unavailable"),
        (httpx.Response(404, text="<html>404</html>"), ErpUnavailable, "erp-unavailable"),
    ],
)
async def test_errors_are_translated_at_one_edge(reply: Any, error: type[Exception], code: str) -> None:
    fake = FakeTryton()
    fake.reply = reply
    backend = _backend(fake)
    with pytest.raises(error) as caught:
        await backend._rpc.call("model.x.search", [])
    await backend.aclose()
    assert getattr(caught.value, "code", None) == code
    if code == "rejected-by-erp":
        assert caught.value.detail in {"You can not do that.", "Are you sure?"}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("exc", "error"), [(httpx.ConnectError("refused"), ErpUnavailable), (httpx.ReadTimeout("slow"), ErpTimeout)]
)
async def test_transport_failures(exc: Exception, error: type[Exception]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    backend = TrytonBackend(SETTINGS, httpx.AsyncClient(transport=httpx.MockTransport(fail)), close_client=True)
    with pytest.raises(error):
        await backend.check_ready()
    await backend.aclose()


def test_the_password_comes_from_a_file_and_never_shows(tmp_path: Any) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    settings = TrytonSettings(password="from-env", password_file=str(secret))
    assert settings.resolve_password() == "from-file"
    assert "from-env" not in repr(settings)
    assert "from-env" not in repr(Settings(tryton=settings))
    with pytest.raises(ValueError, match="ERPGW_TRYTON__PASSWORD"):
        TrytonSettings().resolve_password()


def test_bootstrap_builds_the_tryton_adapter_with_its_own_client() -> None:
    adapter = build_adapter(Settings(backend="tryton", tryton=SETTINGS))
    assert isinstance(adapter, TrytonBackend)
    asyncio.run(adapter.aclose())
