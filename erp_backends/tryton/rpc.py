"""Tryton JSON-RPC over a given ``httpx.AsyncClient``: one session, its context, one error edge.

Everything that can go wrong talking to Tryton is translated here, and only here, into the
port's exception tree (``erp_backends.errors``)::

    httpx.TimeoutException                       -> ErpTimeout
    httpx.TransportError (connect, reset, ...)   -> ErpUnavailable
    HTTP 401                                     -> log in again once, then ErpUnavailable
    HTTP 5xx, 403/404/422 (misconfiguration)     -> ErpUnavailable
    {"error": ["UserError", [message, ...]]}     -> Rejected("rejected-by-erp", message)
    {"error": ["UserWarning", [name, message]]}  -> acknowledged and retried when asked, else Rejected
    any other {"error": ...} (server exception)  -> ErpUnavailable
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import msgspec

from erp_backends.errors import ErpError, ErpTimeout, ErpUnavailable, Rejected
from erp_backends.port import CallContext
from erp_backends.tryton.settings import TrytonSettings

__all__ = ["TrytonRpc", "TrytonSession", "from_wire", "to_wire"]

log = logging.getLogger("erp_backends.tryton")

#: Context keys taken from the user's preferences after login (company auto-detected there).
_CONTEXT_KEYS = ("company", "companies", "company_filter", "language", "employee", "employees")
#: Warnings acknowledged per call before giving up (each acknowledgement is consumed by its retry).
_MAX_WARNINGS = 3


def to_wire(value: Any) -> Any:
    """Python values to Tryton's JSON (Decimal and dates as ``__class__`` objects)."""
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, datetime):
        return {
            "__class__": "datetime",
            "year": value.year,
            "month": value.month,
            "day": value.day,
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, dict):
        return {key: to_wire(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(item) for item in value]
    return value


def from_wire(value: Any) -> Any:
    """Tryton's JSON to Python values; datetimes are UTC (Tryton stores them naive in UTC)."""
    if isinstance(value, dict):
        kind = value.get("__class__")
        if kind == "Decimal":
            return Decimal(value["decimal"])
        if kind == "date":
            return date(value["year"], value["month"], value["day"])
        if kind == "datetime":
            return datetime(
                value["year"],
                value["month"],
                value["day"],
                value.get("hour", 0),
                value.get("minute", 0),
                value.get("second", 0),
                value.get("microsecond", 0),
                tzinfo=UTC,
            )
        return {key: from_wire(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_wire(item) for item in value]
    return value


class _Answer(msgspec.Struct):
    """A JSON-RPC answer: ``result`` or ``error``, nothing else is read."""

    result: Any = None
    error: Any = None


_decode_answer = msgspec.json.Decoder(_Answer).decode


class _UserWarning(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


class _SessionExpired(Exception):
    pass


class TrytonSession:
    """A Tryton login: the ``Authorization`` value, user id and context. Never holds the password.

    One per worker by default; backends given the same object share one login (tests build a
    backend per test on one server and would otherwise pay Tryton's password hashing each time).
    """

    def __init__(self) -> None:
        self.auth: str | None = None
        self.uid: int | None = None
        self.context: dict[str, Any] = {}


class TrytonRpc:
    """One Tryton login shared by every call of a worker; re-login once on HTTP 401.

    The password is sent only to ``common.db.login``; calls carry the session token. Concurrent
    calls that all meet a 401 log in once: the first takes the lock, the others see a new token.
    """

    def __init__(
        self, settings: TrytonSettings, client: httpx.AsyncClient, password: str, session: TrytonSession | None = None
    ) -> None:
        self._settings = settings
        self._client = client
        self._password = password
        self._endpoint = f"{settings.url.rstrip('/')}/{settings.database}/rpc/"
        self._server_endpoint = f"{settings.url.rstrip('/')}/rpc/"
        self._session = session or TrytonSession()
        self._login_lock = asyncio.Lock()
        self._next_id = 0

    @property
    def context(self) -> dict[str, Any]:
        """The context every call carries (company, language...), read from preferences at login."""
        return self._session.context

    async def call(
        self,
        method: str,
        *params: Any,
        ctx: CallContext | None = None,
        context: dict[str, Any] | None = None,
        accept_warnings: bool = False,
    ) -> Any:
        """``method(*params, context)`` with the session; ``context`` adds to the login context."""
        for _ in range(_MAX_WARNINGS + 1):
            try:
                return await self._authenticated(method, params, ctx, context)
            except _UserWarning as warning:
                if not accept_warnings:
                    raise Rejected("rejected-by-erp", warning.message) from warning
                log.info("acknowledging Tryton warning %s on %s", warning.name, method)
                await self._authenticated(
                    "model.res.user.warning.create",
                    ([{"user": self._session.uid, "name": warning.name, "always": False}],),
                    ctx,
                    None,
                )
        raise Rejected("rejected-by-erp", f"Tryton kept warning on {method}")

    async def server_version(self, ctx: CallContext | None = None) -> str:
        """``common.server.version``: no session, no database; the cheapest call there is."""
        return str(await self._post(self._server_endpoint, "common.server.version", [], None, ctx))

    async def _authenticated(
        self, method: str, params: tuple[Any, ...], ctx: CallContext | None, context: dict[str, Any] | None
    ) -> Any:
        for attempt in range(2):
            auth = self._session.auth or await self._login(stale=None)
            body = [*params, {**self._session.context, **(context or {})}]
            try:
                return await self._post(self._endpoint, method, body, auth, ctx)
            except _SessionExpired as exc:
                if attempt:
                    raise ErpUnavailable("Tryton refused the gateway's session right after login") from exc
                await self._login(stale=auth)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _login(self, stale: str | None) -> str:
        async with self._login_lock:
            if self._session.auth is not None and self._session.auth != stale:
                return self._session.auth  # another call logged in while this one waited
            login = self._settings.user
            try:
                result = await self._post(
                    self._endpoint,
                    "common.db.login",
                    [login, {"password": self._password}, self._settings.language],
                    None,
                    None,
                )
            except _SessionExpired as exc:
                raise ErpUnavailable(f"Tryton refused the login of user {login!r}") from exc
            uid, token = int(result[0]), str(result[1])
            auth = "Session " + base64.b64encode(f"{login}:{uid}:{token}".encode()).decode()
            preferences = await self._post(self._endpoint, "model.res.user.get_preferences", [True, {}], auth, None)
            self._session.uid = uid
            context = {key: preferences[key] for key in _CONTEXT_KEYS if preferences.get(key) is not None}
            self._session.context = {**context, "language": self._settings.language}
            self._session.auth = auth
            log.info(
                "logged in to Tryton %s as %r (company %s)", self._endpoint, login, self._session.context.get("company")
            )
            return auth

    async def _post(self, url: str, method: str, params: list[Any], auth: str | None, ctx: CallContext | None) -> Any:
        self._next_id += 1
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = auth
        if ctx is not None:
            headers["X-Request-ID"] = ctx.correlation_id
            if ctx.traceparent:
                headers["traceparent"] = ctx.traceparent
        payload = msgspec.json.encode({"id": self._next_id, "method": method, "params": to_wire(params)})
        with _translated(method):
            response = await self._client.post(url, content=payload, headers=headers)
        if response.status_code == 401:
            raise _SessionExpired
        if response.status_code >= 500:
            raise ErpUnavailable(f"Tryton answered HTTP {response.status_code} to {method}")
        if response.status_code != 200:
            # 403 unknown method, 404 unknown database, 422 missing context: configuration or code errors.
            raise ErpUnavailable(f"Tryton answered HTTP {response.status_code} to {method}: check url and database")
        try:
            answer = _decode_answer(response.content)
        except msgspec.DecodeError as exc:
            raise ErpUnavailable(f"Tryton sent an unreadable answer to {method}") from exc
        if answer.error is not None:
            raise _business_error(method, answer.error)
        return from_wire(answer.result)


@contextmanager
def _translated(method: str) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ErpTimeout(f"Tryton did not answer {method} in time") from exc
    except httpx.TransportError as exc:
        raise ErpUnavailable(f"Tryton cannot be reached ({type(exc).__name__})") from exc


def _business_error(method: str, error: Any) -> ErpError | _UserWarning:
    kind = error[0] if isinstance(error, list) and error else None
    args = error[1] if isinstance(error, list) and len(error) > 1 else None
    if kind == "UserError" and isinstance(args, list) and args:
        return Rejected("rejected-by-erp", str(args[0]))
    if kind == "UserWarning" and isinstance(args, list) and len(args) > 1:
        return _UserWarning(str(args[0]), str(args[1]))
    # A bare exception text: a server-side failure (or a bug in this adapter), not a business answer.
    log.error("Tryton failed on %s: %r", method, error)
    return ErpUnavailable(f"Tryton failed on {method}")
