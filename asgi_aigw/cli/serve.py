"""``aigw serve``: run the gateway with uvicorn (``--demo``: FakeProvider, no keys, no servers)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import Any

from ..config import ConfigError, GatewayConfig, load_config
from ..kernel.optional import MissingDependency, require
from ..kernel.types import ASGIApp
from .preflight import check_imports, serve_refusal

_CONFIG_ENV = "AIGW_CONFIG"
_DEMO_ENV = "AIGW_DEMO"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="run the gateway with uvicorn")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE", help="YAML configuration (default: providers from env)")
    source.add_argument("--demo", action="store_true", help="FakeProvider and embedded stores: no key needed")
    parser.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (default 1)")
    parser.add_argument(
        "--preload",
        action="store_true",
        help="load the models once, then fork the workers (gunicorn): they share that memory",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    parser.set_defaults(handler=run)


def app_factory() -> ASGIApp:
    """Build the app in each uvicorn worker from the environment the parent set."""
    demo = os.environ.get(_DEMO_ENV) == "1"
    if demo:
        from .demo import demo_config

        config = demo_config()
    else:
        path = os.environ.get(_CONFIG_ENV)
        config = load_config(path) if path else GatewayConfig()
    config = with_env_traces(config)
    if config.trace is not None:
        from ..trace.setup import configure_from_env

        # in the worker: the batch exporter's thread must belong to the process that serves
        configure_from_env()
    if demo:
        from .demo import build_demo_app

        return build_demo_app(config)
    from ..app import build_app
    from ..preload import freeze_startup_heap

    app = build_app(config)
    # the worker owns its process: what it built lives as long as it does, out of the collector's way
    freeze_startup_heap()
    return app


def with_env_traces(config: GatewayConfig, env: Mapping[str, str] | None = None) -> GatewayConfig:
    """``config`` with traces on when ``OTEL_TRACES_EXPORTER`` names an exporter (and the SDK is not
    disabled), as the standard variables promise, though it has no ``trace:`` section."""
    from ..trace.config import TraceConfig
    from ..trace.setup import wants_traces

    if config.trace is None and wants_traces(env):
        return config.model_copy(update={"trace": TraceConfig()})
    return config


def run(args: argparse.Namespace) -> int:
    try:
        uvicorn = require("uvicorn", "server")
        if args.preload:
            require("gunicorn", "server")
        if args.demo:
            from .demo import demo_config

            config = demo_config()
        else:
            config = load_config(args.config) if args.config else GatewayConfig()
        config = with_env_traces(config)
        if config.trace is not None:
            from ..trace.setup import check_env

            check_env()
        # Resolve once here so a bad configuration fails before uvicorn starts.
        from ..router.registry import ModelRegistry

        registry = ModelRegistry(config.router, {} if args.demo else None)
        from ..hooks import Hooks

        Hooks.from_config(config.router.hooks)  # a hook path that does not import, or a sync hook
        check_imports(config)  # the tenant's resolver and authorize check, the dashboard's access rule
        if config.budget is not None:
            from ..app import budget_settings
            from ..budget.middleware import check_prices

            check_prices(budget_settings(config, config.budget))
    except (ConfigError, MissingDependency) as exc:
        print(f"aigw serve: {exc}", file=sys.stderr)
        return 2
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    workers = args.workers if args.workers is not None else config.server.workers
    refusal = serve_refusal(config, host=host, port=port, workers=workers, demo=args.demo)
    if refusal is None and args.preload:
        refusal = _preload_refusal(config)
    if refusal is not None:
        print(f"aigw serve: {refusal}", file=sys.stderr)
        return 2
    os.environ[_DEMO_ENV] = "1" if args.demo else "0"
    if args.config:
        os.environ[_CONFIG_ENV] = os.path.abspath(args.config)
    models = ", ".join(model_id for model_id, _ in registry.model_ids()) or "none configured"
    base = f"http://{host}:{port}{config.prefix}/v1"
    print(f"asgi_aigw {'demo ' if args.demo else ''}gateway: OpenAI base URL {base}", file=sys.stderr)
    print(f"models: {models}", file=sys.stderr)
    if args.demo:
        print(
            "try:  curl -s " + base + "/chat/completions -H 'content-type: application/json' "
            '-d \'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]}\'',
            file=sys.stderr,
        )
        print(
            "PII redaction is on: put an e-mail address or a name in a message; the provider receives "
            "placeholders (printed here), your answer has your values back.",
            file=sys.stderr,
        )
    if config.log is not None and config.log.store is not None:
        print(f"request log: {config.log.store} (read it with: aigw usage)", file=sys.stderr)
    if config.dashboard is not None:
        print(f"usage dashboard: http://{host}:{port}{config.prefix}/dashboard/", file=sys.stderr)
    if config.log is not None and config.log.metrics is not None and config.log.metrics.serve:
        print(f"metrics: http://{host}:{port}{config.prefix}/metrics", file=sys.stderr)
    _prepare_static_table(config)
    if args.preload:
        return _serve_preloaded(config, host=host, port=port, workers=workers, log_level=args.log_level)
    uvicorn.run(
        "asgi_aigw.cli.serve:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=args.log_level,
    )
    return 0


def _prepare_static_table(config: GatewayConfig) -> None:
    """Derive the static embedding table now, once, if the semantic layer will need it: before the
    workers start, which then map the file, rather than in the first worker while requests miss."""
    cache = config.cache
    if cache is None or cache.vector_store is None or config.runtime.embedder.backend != "static":
        return
    from ..runtime.static_table import find_or_derive

    try:
        find_or_derive(config.runtime)
    except Exception as exc:  # the cache reports it again, and misses, when it embeds
        print(
            f"aigw serve: the semantic cache's static embedding table is not available: {exc}",
            file=sys.stderr,
        )


def _preload_refusal(config: GatewayConfig) -> str | None:
    """chDB's engine, imported by the parent, hangs on its first query in a forked worker."""
    sink = config.log.store if config.log is not None else None
    if sink is not None and sink.startswith("chdb://"):
        return (
            f"--preload forks the workers after building the app, and chDB (log.store {sink}) does not "
            "survive a fork: use log.store: jsonl://PATH or clickhouse://HOST:8123/DB, or drop --preload."
        )
    return None


def _worker_class() -> str:
    """uvicorn's worker for gunicorn: the ``uvicorn-worker`` package, else the one uvicorn still ships."""
    try:
        require("uvicorn_worker", "server")
    except MissingDependency:
        return "uvicorn.workers.UvicornWorker"
    return "uvicorn_worker.UvicornWorker"


def _serve_preloaded(config: GatewayConfig, *, host: str, port: int, workers: int, log_level: str) -> int:
    """Build the app and load what it loads lazily in this process, then let gunicorn fork the workers
    (uvicorn's worker class): the models' memory is shared copy-on-write instead of loaded per worker."""
    from ..preload import preload

    application: Any = require("gunicorn.app.base", "server").BaseApplication
    try:
        app = app_factory()
        preload(app, config)
    except (ConfigError, MissingDependency) as exc:  # found only as the app is built: one line, no trace
        print(f"aigw serve: {exc}", file=sys.stderr)
        return 2
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": _worker_class(),
        "loglevel": log_level,
        "preload_app": True,
    }

    class PreloadedServer(application):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> ASGIApp:
            return app

    PreloadedServer().run()
    return 0
