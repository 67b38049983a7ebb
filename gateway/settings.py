"""Settings: defaults, then an optional TOML file, then ``ERPGW_*`` environment variables.

The TOML file is named by ``ERPGW_CONFIG``. Nested settings are reached from the environment
with a double underscore: ``ERPGW_SAMPLE__PATH=/data/erp.sqlite`` sets ``[sample] path``.
Every field is documented in README.md with its default; ``Settings.describe()`` lists them.

A bad setting is a ``SettingsError`` naming its environment variable and what to set;
``check_startup`` adds the checks the app, auth and backends would otherwise make only in
each worker (``erp-gateway serve`` runs them in the gunicorn master, before forking).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn
from urllib.parse import urlsplit

import msgspec

from erp_backends.sample import SampleSettings
from erp_backends.tryton import TrytonSettings
from gateway.auth.settings import AuthSettings
from gateway.intake.settings import IntakeSettings
from gateway.observability.settings import ObservabilitySettings
from gateway.routing.settings import RoutingSettings
from gateway.shared_state.connect import RedisSettings, parse_nodes
from gateway.writes.idempotency import IdempotencySettings
from policies.caching import CacheSettings
from policies.call_budget import CallBudgetSettings
from policies.circuit_breaking import BreakerSettings
from policies.quotas import QuotaSettings
from policies.retrying import RetrySettings
from policies.timeouts import TimeoutSettings

__all__ = [
    "BackendSettings",
    "HttpSettings",
    "SampleBackendSettings",
    "Settings",
    "SettingsError",
    "TrytonBackendSettings",
    "check_startup",
    "env_name",
    "load_settings",
]

ENV_PREFIX = "ERPGW_"


class SampleBackendSettings(SampleSettings, frozen=True, tag_field="kind", tag="sample"):
    """``[backends.<name>] kind = "sample"``: an embedded sample ERP (the ``[sample]`` fields)."""


class TrytonBackendSettings(TrytonSettings, frozen=True, tag_field="kind", tag="tryton"):
    """``[backends.<name>] kind = "tryton"``: a Tryton server (the ``[tryton]`` fields)."""


#: One entry of ``backends``: its ``kind`` selects the Struct (msgspec tagged union).
BackendSettings = SampleBackendSettings | TrytonBackendSettings
_KIND_OF: dict[str, type[SampleBackendSettings] | type[TrytonBackendSettings]] = {
    "sample": SampleBackendSettings,
    "tryton": TrytonBackendSettings,
}
_BACKEND_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class HttpSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Limits on what a caller may send."""

    #: Largest accepted request body in bytes (larger: 413 problem).
    max_body_bytes: int = 256 * 1024
    #: Serve the API reference at /docs and the spec at /docs/openapi.json.
    docs_enabled: bool = True
    #: Largest accepted request header section in bytes (larger: 431 problem).
    max_header_bytes: int = 16 * 1024
    #: Browser origins allowed by CORS, space- or comma-separated; empty: CORS off.
    cors_allow_origins: str = ""
    #: Answer cached single-SKU availability GETs on the hot path, outside Litestar's router
    #: (same answer and headers; ``gateway.hot_path``). Off: every request takes the full route.
    hot_path: bool = True


class ServerSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """How ``erp-gateway serve`` runs gunicorn."""

    #: Address to bind; loopback by default, set 0.0.0.0 only inside a container.
    host: str = "127.0.0.1"
    #: TCP port.
    port: int = 8080
    #: gunicorn worker processes.
    workers: int = 2
    #: Seconds a worker may take to answer before gunicorn restarts it.
    timeout: int = 30
    #: Seconds a worker has after SIGTERM to finish the requests in flight (it takes no new
    #: connection meanwhile) before it is killed; a pod's grace period must exceed preStop + this.
    graceful_timeout: int = 20


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """All settings of the gateway."""

    #: Which ERP backend serves the contract: ``sample`` (embedded) or ``tryton``; used, with the
    #: ``[sample]`` or ``[tryton]`` section, only while ``backends`` is empty.
    backend: Literal["sample", "tryton"] = "sample"
    #: Named backends, each with its ``kind`` and that kind's settings; empty: one, from ``backend``.
    backends: dict[str, BackendSettings] = msgspec.field(default_factory=dict)
    #: The named backend serving every operation; empty: the only one configured.
    default_backend: str = ""
    #: Python logging level of the gateway's own loggers.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    sample: SampleSettings = msgspec.field(default_factory=SampleSettings)
    tryton: TrytonSettings = msgspec.field(default_factory=TrytonSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    redis: RedisSettings = msgspec.field(default_factory=RedisSettings)
    cache: CacheSettings = msgspec.field(default_factory=CacheSettings)
    quotas: QuotaSettings = msgspec.field(default_factory=QuotaSettings)
    erp_limits: CallBudgetSettings = msgspec.field(default_factory=CallBudgetSettings)
    breaker: BreakerSettings = msgspec.field(default_factory=BreakerSettings)
    retry: RetrySettings = msgspec.field(default_factory=RetrySettings)
    timeouts: TimeoutSettings = msgspec.field(default_factory=TimeoutSettings)
    idempotency: IdempotencySettings = msgspec.field(default_factory=IdempotencySettings)
    intake: IntakeSettings = msgspec.field(default_factory=IntakeSettings)
    routing: RoutingSettings = msgspec.field(default_factory=RoutingSettings)
    observability: ObservabilitySettings = msgspec.field(default_factory=ObservabilitySettings)

    def backend_entries(self) -> dict[str, BackendSettings]:
        """Every configured backend by name: ``backends``, or the one ``backend`` names (named
        after its kind, so labels, breakers and readiness read ``sample`` or ``tryton``)."""
        if self.backends:
            return dict(self.backends)
        section = self.sample if self.backend == "sample" else self.tryton
        return {self.backend: msgspec.convert(msgspec.to_builtins(section), _KIND_OF[self.backend])}

    def default_backend_name(self) -> str:
        """The backend serving every operation no routing rule sends elsewhere (``routing``)."""
        if self.default_backend:
            return self.default_backend
        names = list(self.backends) or [self.backend]
        return names[0]

    def backend_section(self, name: str) -> str:
        """Where a backend's settings live (``tryton``, or ``backends.next``), for messages."""
        return f"backends.{name}" if self.backends else self.backend

    @classmethod
    def describe(cls) -> Iterator[tuple[str, str, Any]]:
        """(environment variable, type, default) for every setting, for docs and ``--help``."""
        yield from _describe(cls(), ENV_PREFIX)


def _describe(value: Any, prefix: str) -> Iterator[tuple[str, str, Any]]:
    """Walk a settings value: nested Structs and dicts become ``__``-separated names."""
    if isinstance(value, msgspec.Struct):
        for field in msgspec.structs.fields(value):
            yield from _describe(getattr(value, field.name), f"{prefix}{field.name.upper()}__")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _describe(item, f"{prefix}{str(key).upper()}__")
    else:
        yield prefix.rstrip("_"), type(value).__name__, value


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == f"{ENV_PREFIX}CONFIG":
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # ERPGW_SERVER=5 beside ERPGW_SERVER__PORT=1
                group = ENV_PREFIX + "__".join(path[: depth + 1]).upper()
                raise SettingsError(group, "is a group of settings, not a value: set its fields instead")
            node = child
        if isinstance(node.get(path[-1]), dict):
            raise SettingsError(name, "is a group of settings, not a value: set its fields instead")
        node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class SettingsError(ValueError):
    """A setting the gateway cannot start with: one line naming its environment variable
    (and, for nested settings, its ``section.name`` in the TOML file) and what to set."""

    def __init__(self, env: str, problem: str, dotted: str | None = None) -> None:
        where = f"{env} ({dotted})" if dotted else env
        super().__init__(" ".join(f"invalid setting {where}: {problem}".split()))
        self.env = env


def env_name(dotted: str) -> str:
    """``erp_limits.calls_per_second`` -> ``ERPGW_ERP_LIMITS__CALLS_PER_SECOND``."""
    return ENV_PREFIX + "__".join(part.upper() for part in dotted.split("."))


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the TOML file named by ``ERPGW_CONFIG`` (if any) and the environment.

    Raises ``SettingsError`` (a ``ValueError``) naming the setting when a value does not fit.
    """
    environ = os.environ if environ is None else environ
    toml: dict[str, Any] = {}
    if config := environ.get(f"{ENV_PREFIX}CONFIG"):
        try:
            toml = tomllib.loads(Path(config).read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError(f"{ENV_PREFIX}CONFIG", f"cannot read {config} ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise SettingsError(f"{ENV_PREFIX}CONFIG", f"{config} is not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{ENV_PREFIX}CONFIG", f"{config} is not valid TOML ({exc})") from None
    # Overrides merge into the defaults, so one nested field can be set without the rest.
    raw = _merge(_merge(msgspec.to_builtins(Settings()), toml), _from_env(environ))
    _check_backend_entries(raw)
    try:
        # strict=False lets "8080" from the environment become an int, "true" a bool.
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise _explained(str(exc), raw) from None
    _check_backends(settings)
    if settings.backends and (f"{ENV_PREFIX}BACKEND" in environ or "backend" in toml):
        raise SettingsError(
            f"{ENV_PREFIX}BACKEND",
            "is ignored once backends are named (ERPGW_BACKENDS__<NAME>__KIND=...): name every backend there "
            "and pick ERPGW_DEFAULT_BACKEND, or drop the named ones",
        )
    _check_numbers(settings, ENV_PREFIX)
    _check_relations(settings)
    return settings


def _check_relations(settings: Settings) -> None:
    """Numbers that must be more than zero, and the one that must outlast another."""
    positive = {
        "timeouts.read_seconds": settings.timeouts.read_seconds,
        "timeouts.write_seconds": settings.timeouts.write_seconds,
        "timeouts.start_seconds": settings.timeouts.start_seconds,
        "idempotency.ttl_seconds": settings.idempotency.ttl_seconds,
        "breaker.fail_max": settings.breaker.fail_max,
        "http.max_body_bytes": settings.http.max_body_bytes,
        "quotas.lease_divisor": settings.quotas.lease_divisor,
        "quotas.max_lease": settings.quotas.max_lease,
    }
    intake = settings.intake
    positive.update(
        {
            "intake.max_stock_age_seconds": intake.max_stock_age_seconds,
            "intake.posting_concurrency": intake.posting_concurrency,
            "intake.max_attempts": intake.max_attempts,
            "intake.backoff_seconds": intake.backoff_seconds,
            "intake.max_backoff_seconds": intake.max_backoff_seconds,
            "intake.idle_seconds": intake.idle_seconds,
            "intake.retention_days": intake.retention_days,
            "intake.salability_ttl_seconds": intake.salability_ttl_seconds,
        }
    )
    if not intake.price_tolerance.is_finite() or intake.price_tolerance < 0:
        raise SettingsError(env_name("intake.price_tolerance"), "set an amount of 0 or more", "intake.price_tolerance")
    for name, quota in settings.quotas.classes.items():
        positive[f"quotas.classes.{name}.requests"] = quota.requests
        positive[f"quotas.classes.{name}.window_seconds"] = quota.window_seconds
    for dotted, number in positive.items():
        if number <= 0:
            raise SettingsError(env_name(dotted), f"{number!r} must be more than zero", dotted)
    keep = settings.intake.posted_hold_seconds(settings.cache)
    if settings.intake.retention_days * 86_400 <= keep:
        raise SettingsError(
            env_name("intake.retention_days"),
            f"{settings.intake.retention_days:g} days must outlast a posted hold ({keep:g} s: the oldest "
            "stock snapshot intake or an availability answer may use, + 120 s)",
            "intake.retention_days",
        )
    if settings.intake.lease_seconds <= settings.timeouts.write_seconds:
        raise SettingsError(
            env_name("intake.lease_seconds"),
            f"{settings.intake.lease_seconds} must be longer than ERPGW_TIMEOUTS__WRITE_SECONDS "
            f"({settings.timeouts.write_seconds:g}): a worker's hold on an order must outlast its post",
            "intake.lease_seconds",
        )
    if settings.idempotency.lease_seconds <= settings.timeouts.write_seconds:
        raise SettingsError(
            env_name("idempotency.lease_seconds"),
            f"{settings.idempotency.lease_seconds} must be longer than ERPGW_TIMEOUTS__WRITE_SECONDS "
            f"({settings.timeouts.write_seconds:g}): a claim must outlast the write it guards",
            "idempotency.lease_seconds",
        )


def _check_numbers(value: Any, prefix: str) -> None:
    """Every number a setting holds is finite and not negative (a timeout of nan or -1, a lease
    of -5: each would switch off what it configures without a word)."""
    if isinstance(value, msgspec.Struct):
        for field in msgspec.structs.fields(value):
            _check_numbers(getattr(value, field.name), f"{prefix}{field.name.upper()}__")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_numbers(item, f"{prefix}{str(key).upper()}__")
    elif isinstance(value, int | float) and not isinstance(value, bool) and not (math.isfinite(value) and value >= 0):
        raise SettingsError(prefix.rstrip("_"), f"{value!r} is not a finite number of zero or more")


def _check_backend_entries(raw: Mapping[str, Any]) -> None:
    """Each ``backends`` entry on its own, so a bad one is named (msgspec says ``backends[...]``)."""
    entries = raw.get("backends")
    if not isinstance(entries, Mapping):
        return
    for name, entry in entries.items():
        dotted = f"backends.{name}"
        if not _BACKEND_NAME.match(str(name)):
            hint = f"backend name {name!r}: use lower-case letters, digits and _ (at most 32), starting with a letter"
            raise SettingsError(env_name(dotted), hint, dotted)
        if not isinstance(entry, Mapping) or entry.get("kind") not in _KIND_OF:
            got = entry.get("kind") if isinstance(entry, Mapping) else entry
            hint = (
                f"{got!r} is not one of: {', '.join(_KIND_OF)}"
                if got is not None
                else "set the backend's kind: sample or tryton"
            )
            raise SettingsError(env_name(f"{dotted}.kind"), f"{hint}", f"{dotted}.kind")
        try:
            msgspec.convert(entry, _KIND_OF[entry["kind"]], strict=False)
        except msgspec.ValidationError as exc:
            where = str(exc).replace(" - at `$", f" - at `$.{dotted}")
            if " - at `" not in where:
                where += f" - at `$.{dotted}`"
            raise _explained(where, raw) from None


def _check_backends(settings: Settings) -> None:
    """Names that fit every place they label, and a default that exists (and is unambiguous)."""
    chosen = settings.default_backend
    names = list(settings.backend_entries())
    if chosen and chosen not in names:
        hint = f"{chosen!r} is not a configured backend; one of: {', '.join(names)}"
        raise SettingsError(env_name("default_backend"), hint, "default_backend")
    if not chosen and len(names) > 1:
        hint = f"several backends are configured ({', '.join(names)}): name the one serving every operation"
        raise SettingsError(env_name("default_backend"), hint, "default_backend")
    for dotted, problem in settings.routing.problems(names, settings.default_backend_name()):
        raise SettingsError(env_name(dotted), problem, dotted)
    if settings.routing.channels and not settings.auth.channel_claim:
        hint = "set auth.channel_claim too: the token claim naming the sales channel (channel)"
        raise SettingsError(env_name("auth.channel_claim"), hint, "auth.channel_claim")


_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_PART = re.compile(r"\.(\w+)|\[(?:'([^']*)'|\"([^\"]*)\"|(\d+))\]")
_OWN_NAME = re.compile(r"^(?:invalid setting: )?(?P<dotted>[a-z_]+(?:\.[a-z_]+)+):?\s+(?P<problem>.*)$", re.S)
_KINDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}


def _explained(message: str, raw: Mapping[str, Any]) -> SettingsError:
    """msgspec's ``Expected `int`, got `str` - at `$.server.port``` as a ``SettingsError``."""
    match = _AT.match(message)
    assert match is not None  # the pattern matches any text
    text, path = match["message"], match["path"] or ""
    parts = [next(g for g in m.groups() if g is not None) for m in _PART.finditer(path)]
    if unknown := re.match(r"Object contains unknown field `([^`]*)`", text):
        dotted = ".".join([*parts, unknown[1]])
        return SettingsError(env_name(dotted), "no such setting; `erp-gateway settings` lists them all", dotted)
    if own := _OWN_NAME.match(text):  # a check of the settings' own (``__post_init__``)
        return SettingsError(env_name(own["dotted"]), own["problem"], own["dotted"])
    dotted = ".".join(parts)
    kind = _field_type(parts, raw)
    value: Any = raw
    for part in parts:
        value = value.get(part) if isinstance(value, Mapping) else None
    if (isinstance(kind, type) and issubclass(kind, msgspec.Struct)) or typing.get_origin(kind) is dict:
        hint = f"is a group of settings, not a value: set {env_name(dotted)}__<NAME> (`erp-gateway settings`)"
        return SettingsError(env_name(dotted), hint, dotted)
    if typing.get_origin(kind) is typing.Literal:
        choices = ", ".join(str(c) for c in typing.get_args(kind))
        return SettingsError(env_name(dotted), f"{value!r} is not one of: {choices}", dotted)
    if isinstance(kind, type) and kind in _KINDS:
        return SettingsError(env_name(dotted), f"{value!r} is not {_KINDS[kind]}; set {_KINDS[kind]}", dotted)
    return SettingsError(env_name(dotted) if dotted else f"{ENV_PREFIX}*", text[:1].lower() + text[1:], dotted or None)


def _field_type(parts: list[str], raw: Mapping[str, Any]) -> Any:
    """The declared type of the setting at ``parts`` (None: unknown)."""
    kind: Any = Settings
    node: Any = raw
    for part in parts:
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
            kind = next((f.type for f in msgspec.structs.fields(kind) if f.name == part), None)
        elif typing.get_origin(kind) is dict:
            kind = typing.get_args(kind)[1]
        else:
            return None
        node = node.get(part) if isinstance(node, Mapping) else None
        if kind is BackendSettings:  # the entry's kind selects its Struct
            kind = _KIND_OF.get(str(node.get("kind")) if isinstance(node, Mapping) else "")
    return kind


def check_startup(settings: Settings, *, serving: bool = True) -> None:
    """What each worker would find wrong only after the fork, checked once without the network:
    the identity provider (``serving``), the backend's credentials and files, the server.

    Raises ``SettingsError`` naming the first setting to fix."""
    if serving:
        try:
            settings.auth.check_startup()
        except ValueError as exc:
            own = _OWN_NAME.match(str(exc))
            if own is None:
                raise
            raise SettingsError(env_name(own["dotted"]), own["problem"], own["dotted"]) from None
        server = settings.server
        if not 0 < server.port < 65536:
            raise SettingsError("ERPGW_SERVER__PORT", f"{server.port} is not a TCP port (1-65535)", "server.port")
        if server.workers < 1:
            raise SettingsError("ERPGW_SERVER__WORKERS", "set at least 1 worker", "server.workers")
        if server.timeout < 1:
            raise SettingsError("ERPGW_SERVER__TIMEOUT", "set at least 1 second", "server.timeout")
        if server.graceful_timeout < 1:
            raise SettingsError("ERPGW_SERVER__GRACEFUL_TIMEOUT", "set at least 1 second", "server.graceful_timeout")
        _writable(settings.idempotency.path, "idempotency.path")
    if token_file := settings.observability.metrics_token_file:  # the worker's /metrics reads it too
        _readable(token_file, "observability.metrics_token_file")
    if not 0.0 <= settings.observability.trace_sample_ratio <= 1.0:  # the worker traces too
        hint = "set a share between 0 and 1"
        raise SettingsError("ERPGW_OBSERVABILITY__TRACE_SAMPLE_RATIO", hint, "observability.trace_sample_ratio")
    _check_redis(settings.redis)
    default = settings.backend_entries()[settings.default_backend_name()]
    if settings.intake.enabled and isinstance(default, TrytonBackendSettings) and not default.confirm_orders:
        section = settings.backend_section(settings.default_backend_name())
        raise SettingsError(
            env_name(f"{section}.confirm_orders"),
            "must be true while order intake is on (ERPGW_INTAKE__ENABLED): a quotation commits no stock, so "
            "every posted order's units would be promised again",
            f"{section}.confirm_orders",
        )
    if settings.intake.enabled and not settings.redis.configured:
        _writable(settings.intake.path, "intake.path")
    for name, entry in settings.backend_entries().items():
        _check_backend_entry(settings.backend_section(name), entry)


def _check_redis(redis: RedisSettings) -> None:
    """The Redis section names one deployment, completely: each mode's own fields, no other's."""

    def fail(name: str, problem: str) -> NoReturn:
        raise SettingsError(env_name(f"redis.{name}"), problem, f"redis.{name}")

    if redis.mode == "standalone":
        if redis.nodes or redis.service_name:
            extra = "nodes" if redis.nodes else "service_name"
            fail(extra, "belongs to sentinel or cluster mode: set ERPGW_REDIS__MODE")
        if redis.url and _scheme(redis.url) not in {"redis", "rediss", "unix"}:
            shown = _without_userinfo(redis.url)
            fail("url", f"{shown!r} is not a redis://, rediss:// or unix:// URL; leave it empty for no Redis")
        if redis.tls and not redis.url.startswith("rediss://"):
            fail("tls", "standalone Redis chooses TLS by its URL: use a rediss:// URL")
    else:
        if redis.url:
            fail("url", f"is for standalone Redis; in {redis.mode} mode list the nodes in ERPGW_REDIS__NODES")
        if not redis.nodes:
            what = "the Sentinels" if redis.mode == "sentinel" else "one or more cluster nodes"
            fail("nodes", f"{redis.mode} mode needs {what} as host:port,host:port")
        try:
            parse_nodes(redis.nodes)
        except ValueError as exc:
            fail("nodes", str(exc))
        if redis.mode == "sentinel" and not redis.service_name:
            fail("service_name", "sentinel mode needs the name the Sentinels monitor the primary under")
        if redis.mode == "cluster" and redis.service_name:
            fail("service_name", "belongs to sentinel mode")
    for name in ("password_file", "sentinel_password_file", "tls_ca_file", "tls_cert_file", "tls_key_file"):
        if path := getattr(redis, name):
            _readable(path, f"redis.{name}")
    if "{" in redis.key_prefix or "}" in redis.key_prefix:
        fail("key_prefix", "must not hold { or }: the keys' hash tags decide their Cluster slot")
    if redis.max_connections < 1:
        fail("max_connections", "set at least 1 connection")
    if redis.timeout_seconds <= 0:
        fail("timeout_seconds", "set a timeout above 0 seconds")


def _check_backend_entry(section: str, entry: BackendSettings) -> None:
    """A backend's files and credentials; ``section`` is ``tryton`` or ``backends.<name>``."""
    if isinstance(entry, SampleBackendSettings):
        _writable(entry.path, f"{section}.path")
        return
    if entry.password_file:
        _readable(entry.password_file, f"{section}.password_file")
    elif not entry.password:
        hint = f"the Tryton backend needs the password of {env_name(section + '.user')}: name a file holding it"
        raise SettingsError(env_name(f"{section}.password_file"), f"{hint} (or set {env_name(section + '.password')})")
    try:
        entry.resolve_password()
    except ValueError as exc:
        raise SettingsError(env_name(f"{section}.password_file"), str(exc), f"{section}.password_file") from None
    try:
        parts = urlsplit(entry.url)
        host = parts.hostname
    except ValueError:  # "Invalid IPv6 URL"
        host = None
    if host is None or parts.scheme not in {"http", "https"}:
        shown = _without_userinfo(entry.url)
        raise SettingsError(env_name(f"{section}.url"), f"{shown!r} is not an http(s) URL", f"{section}.url")


def _without_userinfo(url: str) -> str:
    """``url`` as an error message may show it: a ``user:password@`` part replaced by ``***@``."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = (rest if sep else url).partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}" if sep else f"{authority}{slash}{path}"


def _scheme(url: str) -> str | None:
    try:
        return urlsplit(url).scheme
    except ValueError:  # "Invalid IPv6 URL"
        return None


def _readable(path: str, dotted: str) -> None:
    try:
        with Path(path).open("rb"):
            pass
    except OSError as exc:
        raise SettingsError(env_name(dotted), f"cannot read {path} ({exc.strerror})", dotted) from None


def _writable(path: str, dotted: str) -> None:
    """The file exists and can be written, or the nearest existing directory above it can."""
    target = Path(path).absolute()
    if target.exists():
        if target.is_dir() or not os.access(target, os.R_OK | os.W_OK):
            raise SettingsError(env_name(dotted), f"cannot write {path}; name a writable file", dotted)
        return
    above = next(p for p in target.parents if p.exists())
    if not above.is_dir() or not os.access(above, os.W_OK | os.X_OK):
        raise SettingsError(env_name(dotted), f"cannot create {path}; name a writable place", dotted)
