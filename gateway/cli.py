"""``erp-gateway``: serve the gateway under gunicorn, or export the OpenAPI spec."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from erp_backends.port import ErpBackend
from gateway.observability.logging import configure_logging, gunicorn_log_config
from gateway.settings import Settings, check_startup, load_settings

log = logging.getLogger("erp_gateway.worker")

__all__ = ["WrapAdapter", "main", "openapi_document"]

#: Wraps a bare adapter (``gateway.bootstrap.WrapAdapter``; not imported: bootstrap loads the app).
WrapAdapter = Callable[[ErpBackend], ErpBackend]

DEFAULT_SPEC_PATH = Path("openapi/v1.json")
#: The last v1 published to partners (README "Versioning policy"): the breaking-change baseline.
PUBLISHED_SPEC_PATH = Path("openapi/published/v1.json")


def openapi_document() -> str:
    """The v1 spec as committed: generated from the contracts with default settings."""
    from gateway.app import create_app

    schema = create_app(Settings()).openapi_schema.to_schema()
    return msgspec.json.format(msgspec.json.encode(schema), indent=2).decode("utf-8") + "\n"


def _child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook: a dead worker's live gauges (in-flight calls, breaker state) stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def _post_worker_init(worker: Any) -> None:
    """gunicorn hook, in each worker once the app is built: move everything that lives as long
    as the process (modules, the app, its routes) out of the garbage collector's sight. Without
    this, every full collection walks ~100k long-lived objects: a 40-80 ms pause of the event
    loop every few seconds under load, the whole of the gateway's p99 (docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()


def _bounded(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high`` (argparse names the flag)."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{number} is not from {low} to {high}")
        return number

    return parse


def _with_serve_options(settings: Settings, args: argparse.Namespace) -> Settings:
    """The settings with ``serve``'s options in them: the workers read ``server.workers`` too
    (each worker's quota share, whether orders may be cached), not only gunicorn."""
    server = settings.server
    options = {"host": args.host, "port": args.port, "workers": args.workers}
    given = {name: value for name, value in options.items() if value is not None}
    return msgspec.structs.replace(settings, server=msgspec.structs.replace(server, **given)) if given else settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    # Before prometheus_client is first imported (it picks its storage then): every worker
    # writes its samples here and /metrics adds them up. Fresh per run, removed at exit.
    metrics_dir = tempfile.mkdtemp(prefix="erp-gateway-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

    from gunicorn.app.base import BaseApplication

    from gateway.app import create_app

    options: dict[str, Any] = {
        "bind": f"{settings.server.host}:{settings.server.port}",
        "workers": settings.server.workers,
        "worker_class": "uvicorn_worker.UvicornWorker",
        "timeout": settings.server.timeout,
        "graceful_timeout": settings.server.graceful_timeout,
        "reload": args.reload,
        "control_socket_disable": True,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "logconfig_dict": gunicorn_log_config(settings.log_level, settings.observability.log_format),
        "child_exit": _child_exit,
        "post_worker_init": _post_worker_init,
        "proc_name": "erp-gateway",
    }

    class GatewayApplication(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Callable[..., Any]:
            # Runs in each worker after the fork: every worker builds its own app and clients.
            return create_app(settings, wrap_adapter=args.wrap_adapter)

    try:
        GatewayApplication().run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _openapi(args: argparse.Namespace, settings: Settings) -> int:
    document = openapi_document()
    if args.diff or args.check_compatible:
        from gateway.openapi_diff import breaking, diff, report

        if not args.against.exists():
            print(f"{args.against}: no published spec to compare with", file=sys.stderr)
            return 2
        changes = diff(msgspec.json.decode(args.against.read_bytes()), msgspec.json.decode(document))
        if args.diff:
            print(f"{args.against} -> the spec generated from the contracts:")
            print(report(changes))
        if args.check_compatible and breaking(changes):
            if not args.diff:
                print("\n".join(map(str, breaking(changes))), file=sys.stderr)
            print(
                f"breaking changes against {args.against}: v1 may only gain (README: Versioning policy)",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.check:
        if not args.output.exists() or args.output.read_text(encoding="utf-8") != document:
            print(f"{args.output} is out of date: run `erp-gateway openapi`", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(document, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


def _settings(args: argparse.Namespace, settings: Settings) -> int:
    for name, kind, default in Settings.describe():
        print(f"{name}\t{kind}\t{default!r}")
    return 0


def _check_backend(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.bootstrap import build_adapter
    from gateway.check_backend import Subjects, check_backend

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per ERP call would drown the table
    if args.compare:
        return _compare(settings, *args.compare)
    given = {k: v for k in ("sku", "customer", "order", "currency") if (v := getattr(args, k))}
    subjects = Subjects(**given) if given or not args.dataset else None
    table, ok = check_backend(build_adapter(settings), subjects, with_dataset=args.dataset)
    print(table)
    return 0 if ok else 1


def _compare(settings: Settings, a: str, b: str) -> int:
    """The dataset's reads on two configured backends; exit 1 when any answer differs."""
    from erp_backends.dataset import load_dataset
    from gateway.bootstrap import build_adapter
    from gateway.routing.compare_backends import compare_backends, format_comparison
    from gateway.routing.settings import names as listed

    names = list(settings.backend_entries())
    for name in (a, b):
        if name not in names:
            print(f"{name!r} is not a configured backend; one of: {', '.join(names)}", file=sys.stderr)
            return 2

    async def run() -> tuple[int, list[Any]]:
        left, right = build_adapter(settings, name=a), build_adapter(settings, name=b)
        try:
            return await compare_backends(left, right, load_dataset(), listed(settings.routing.shadow.ignore))
        finally:
            await left.aclose()
            await right.aclose()

    reads, found = asyncio.run(run())
    print(format_comparison(a, b, reads, found))
    return 1 if found else 0


def _shadow_report(args: argparse.Namespace, settings: Settings) -> int:
    """The shadow reads' newest mismatches, from where the gateway keeps them (Redis or the host's file)."""
    from gateway.bootstrap import build_mismatch_log
    from gateway.routes.shadow import report_of
    from gateway.shared_state import open_shared_state

    async def run() -> bytes:
        redis = open_shared_state(settings.redis)
        log = build_mismatch_log(settings, redis)
        try:
            report = report_of(await log.recent(args.limit))
            if args.clear:
                await log.clear()
            return msgspec.json.format(msgspec.json.encode(report), indent=2)
        finally:
            await log.aclose()
            await redis.aclose()

    print(asyncio.run(run()).decode())
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    """Post accepted orders to the ERP until SIGTERM or SIGINT (posts in flight finish), or,
    with ``--once``, post what is due now and exit."""
    import signal

    from gateway.bootstrap import PostingWorker

    async def run() -> int:
        worker = PostingWorker(settings, wrap_adapter=args.wrap_adapter)
        exposed = None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # first: as PID 1 a process ignores SIGTERM without one
            loop.add_signal_handler(sig, worker.poster.stop)
        try:
            metrics, port = worker.telemetry.metrics, settings.intake.metrics_port
            if port and not args.once:
                from gateway.observability.exposition import MetricsServer

                if metrics is None:
                    said = "ERPGW_INTAKE__METRICS_PORT is set but ERPGW_OBSERVABILITY__METRICS_ENABLED is false"
                    print(said, file=sys.stderr)
                    return 2
                token = settings.observability.scrape_token()
                try:
                    exposed = MetricsServer(metrics.registry, settings.server.host, port, token)
                except OSError as exc:
                    print(f"cannot serve metrics on {settings.server.host}:{port}: {exc}", file=sys.stderr)
                    return 2
                log.info("metrics on http://%s:%d/metrics", settings.server.host, port)
            worker.erp.start()
            if args.once:
                attempts = await worker.poster.post_due()
                print(f"{attempts} attempts, {worker.poster.posted} posted")
                return 0
            log.info("posting accepted orders to %s", settings.default_backend_name())
            await worker.poster.run()
            log.info("worker stopped; %d orders posted", worker.poster.posted)
            return 0
        finally:
            if exposed is not None:
                exposed.close()
            await worker.aclose()

    return asyncio.run(run())


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.auth import SCOPES
    from gateway.auth.devkeys import load_or_create_dev_key, mint_token
    from gateway.auth.settings import DEV_ISSUER

    scopes = list(SCOPES) if args.all_scopes else list(dict.fromkeys(args.scope or []))
    if not scopes:
        print("name at least one --scope (or --all-scopes)", file=sys.stderr)
        return 2
    if args.channel and not settings.auth.channel_claim:
        print("--channel needs ERPGW_AUTH__CHANNEL_CLAIM: the claim the gateway reads it from", file=sys.stderr)
        return 2
    key = load_or_create_dev_key(Path(settings.auth.dev_key_path))
    print(
        mint_token(
            key,
            issuer=settings.auth.issuer or DEV_ISSUER,
            audience=settings.auth.audience,
            client_id=args.client,
            scopes=scopes,
            ttl=args.ttl,
            client_class=args.client_class,
            extra_claims={settings.auth.channel_claim: args.channel} if args.channel else None,
        )
    )
    if not settings.auth.dev_mode:
        print("note: the gateway trusts this token only when it runs with ERPGW_AUTH__DEV_MODE=true", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None, *, wrap_adapter: WrapAdapter | None = None) -> int:
    """The command line. ``wrap_adapter`` (no option, no setting: for test harnesses that run
    ``serve`` in-process, ``tests/harness/serve.py``) wraps each bare adapter in every worker."""
    parser = argparse.ArgumentParser(prog="erp-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway under gunicorn")
    serve.add_argument("--host", help="bind address (default: server.host setting)")
    serve.add_argument("--port", type=_bounded(1, 65535), help="port (default: server.port setting)")
    serve.add_argument("--workers", type=_bounded(1, 1024), help="worker processes (default: server.workers setting)")
    serve.add_argument("--reload", action="store_true", help="dev mode: restart workers when code changes")
    serve.set_defaults(run=_serve)

    spec = commands.add_parser("openapi", help="write the OpenAPI spec generated from the contracts")
    spec.add_argument("--output", type=Path, default=DEFAULT_SPEC_PATH)
    spec.add_argument("--check", action="store_true", help="exit 1 when the file differs from the generated spec")
    spec.add_argument(
        "--diff", action="store_true", help="print the changes since the published spec, each breaking or not"
    )
    spec.add_argument(
        "--check-compatible", action="store_true", help="exit 1 when a change since the published spec is breaking"
    )
    spec.add_argument(
        "--against", type=Path, default=PUBLISHED_SPEC_PATH, help=f"the published spec (default {PUBLISHED_SPEC_PATH})"
    )
    spec.set_defaults(run=_openapi)

    show = commands.add_parser("settings", help="list every setting with its environment variable and default")
    show.set_defaults(run=_settings)

    check = commands.add_parser(
        "check-backend", help="run read-only conformance checks against the configured ERP and print a table"
    )
    check.add_argument("--dataset", action="store_true", help="the ERP was seeded from the dataset: check its numbers")
    check.add_argument("--sku", help="a SKU that exists in the ERP (unlocks stock, price and validation checks)")
    check.add_argument("--customer", help="a customer reference that exists in the ERP")
    check.add_argument("--order", help="an order number that exists in the ERP")
    check.add_argument("--currency", help="the currency the ERP prices in (default EUR)")
    check.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="ask two configured backends the dataset's reads and print where their answers differ",
    )
    check.set_defaults(run=_check_backend)

    report = commands.add_parser(
        "shadow-report", help="print the newest mismatches of shadow reads (field paths, both values), as JSON"
    )
    report.add_argument("--limit", type=_bounded(1, 1000), default=100, help="at most this many (default 100)")
    report.add_argument("--clear", action="store_true", help="then forget them (to read the report afresh)")
    report.set_defaults(run=_shadow_report)

    work = commands.add_parser("worker", help="post accepted orders to the ERP (order intake), until SIGTERM")
    work.add_argument("--once", action="store_true", help="post what is due now, then exit")
    work.set_defaults(run=_worker, wrap_adapter=wrap_adapter)

    from gateway.auth.scopes import SCOPES

    token = commands.add_parser(
        "token", help="dev mode: print an access token signed with the local dev key (never for production)"
    )
    token.add_argument("--client", required=True, help="client id the token names (quotas, audit)")
    token.add_argument(
        "--scope",
        action="append",
        choices=sorted(SCOPES),
        metavar="SCOPE",
        help=f"a scope to grant, repeatable: {', '.join(SCOPES)}",
    )
    token.add_argument("--all-scopes", action="store_true", help="grant every scope")
    token.add_argument("--ttl", type=int, default=3600, choices=range(1, 86401), metavar="SECONDS", help="lifetime")
    token.add_argument("--client-class", help="quota class claim (default: none, the gateway's mapping decides)")
    token.add_argument("--channel", help="sales channel claim (web, pos, ...) that routing.channels may route on")
    token.set_defaults(run=_token)

    args = parser.parse_args(argv)
    args.wrap_adapter = wrap_adapter
    try:
        settings = load_settings()
        if args.run is _serve:
            settings = _with_serve_options(settings, args)
        if args.run in (_serve, _check_backend, _worker):
            # In the gunicorn master, before forking: a bad setting is one line here, not a
            # traceback per worker and "Worker failed to boot".
            check_startup(settings, serving=args.run is _serve)
    except ValueError as exc:  # SettingsError: names the environment variable and what to set
        print(f"erp-gateway: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.observability.log_format)
    run: Callable[[argparse.Namespace, Settings], int] = args.run
    return run(args, settings)


if __name__ == "__main__":
    raise SystemExit(main())
