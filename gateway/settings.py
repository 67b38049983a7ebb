"""Settings: defaults, then an optional TOML file, then ``ERPGW_*`` environment variables.

The TOML file is named by ``ERPGW_CONFIG``. Nested settings are reached from the environment
with a double underscore: ``ERPGW_SAMPLE__PATH=/data/erp.sqlite`` sets ``[sample] path``.
Every field is documented in README.md with its default; ``Settings.describe()`` lists them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from erp_backends.faults import FaultSettings
from erp_backends.sample import SampleSettings
from erp_backends.tryton import TrytonSettings
from gateway.auth.settings import AuthSettings
from gateway.observability.settings import ObservabilitySettings
from gateway.writes.idempotency import IdempotencySettings
from policies.caching import CacheSettings
from policies.circuit_breaking import BreakerSettings
from policies.erp_protection import ErpLimitSettings
from policies.quotas import QuotaSettings
from policies.redis_link import RedisSettings
from policies.retrying import RetrySettings
from policies.timeouts import TimeoutSettings

__all__ = ["HttpSettings", "Settings", "load_settings"]

ENV_PREFIX = "ERPGW_"


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


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """All settings of the gateway."""

    #: Which ERP backend serves the contract: ``sample`` (embedded) or ``tryton``.
    backend: Literal["sample", "tryton"] = "sample"
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
    erp_limits: ErpLimitSettings = msgspec.field(default_factory=ErpLimitSettings)
    breaker: BreakerSettings = msgspec.field(default_factory=BreakerSettings)
    retry: RetrySettings = msgspec.field(default_factory=RetrySettings)
    timeouts: TimeoutSettings = msgspec.field(default_factory=TimeoutSettings)
    idempotency: IdempotencySettings = msgspec.field(default_factory=IdempotencySettings)
    faults: FaultSettings = msgspec.field(default_factory=FaultSettings)
    observability: ObservabilitySettings = msgspec.field(default_factory=ObservabilitySettings)

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
        for part in path[:-1]:
            node = node.setdefault(part, {})
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


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the TOML file named by ``ERPGW_CONFIG`` (if any) and the environment.

    Raises ``ValueError`` naming the setting when a value does not fit its type.
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if config := environ.get(f"{ENV_PREFIX}CONFIG"):
        raw = tomllib.loads(Path(config).read_text(encoding="utf-8"))
    # Overrides merge into the defaults, so one nested field can be set without the rest.
    raw = _merge(_merge(msgspec.to_builtins(Settings()), raw), _from_env(environ))
    try:
        # strict=False lets "8080" from the environment become an int, "true" a bool.
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid setting: {exc}") from exc
