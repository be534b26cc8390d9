"""What ``aigw serve`` checks before it prints its banner: a setup that cannot work is refused with one
line saying what to use instead, rather than started and left to fail (or half-work) afterwards."""

from __future__ import annotations

import errno
import socket

from ..budget.store import multi_worker_error
from ..config import GatewayConfig


def serve_refusal(config: GatewayConfig, *, host: str, port: int, workers: int, demo: bool) -> str | None:
    """Why ``aigw serve`` must not start with these settings (one line), or ``None``."""
    if not 1 <= port <= 65535:
        return f"{port} is not a TCP port: choose --port from 1 to 65535."
    if workers < 1:
        return f"--workers {workers} starts no process: use --workers 1 or more."
    if workers > 1:
        refusal = _single_process_refusal(config, workers, demo)
        if refusal is not None:
            return refusal
    return bind_refusal(host, port)


def check_imports(config: GatewayConfig) -> None:
    """Import the callables the configuration names (the tenant resolver and authorize check, the
    dashboard's access rule) and check the dashboard has a log, as the app will: a failure is a
    :class:`ConfigError` here, said in one line, rather than a traceback from a worker (or from the
    parent, with ``--preload``)."""
    if config.tenant is not None:
        from ..tenant.middleware import import_callable

        for what in ("resolver", "authorize"):
            path = getattr(config.tenant, what)
            if path:
                import_callable(path, f"tenant.{what}")
    if config.dashboard is not None:
        from ..app import check_dashboard_log
        from ..dashboard.access import access_rule

        check_dashboard_log(config)
        access_rule(config.dashboard)


def _single_process_refusal(config: GatewayConfig, workers: int, demo: bool) -> str | None:
    """Embedded stores that one process locks: a second worker fails to open them (docs/deployment.md)."""
    if demo:
        return (
            f"--demo runs in one process (its chDB log and Qdrant Edge vectors are locked by the process "
            f"that opens them), not --workers {workers}: drop --workers, or serve --config with server "
            "stores (see docs/deployment.md)."
        )
    if config.budget is not None and (problem := multi_worker_error(config.budget.store, workers)):
        return problem
    sink = config.log.store if config.log is not None else None
    if sink is not None and sink.startswith("chdb://"):
        return (
            f"log.store {sink} is opened by one process only, and --workers {workers} starts {workers}: "
            "use log.store: clickhouse://HOST:8123/DB (shared by every worker), or one worker."
        )
    vector = config.cache.vector_store if config.cache is not None else None
    if vector is not None and _locked_vector_store(vector):
        return (
            f"cache.vector_store {vector} is opened by one process only, and --workers {workers} starts "
            f"{workers}: use cache.vector_store: qdrant+http://HOST:6333 (shared by every worker), or one "
            "worker."
        )
    return None


def _locked_vector_store(url: str) -> bool:
    if url.startswith("qdrant-edge://"):
        return True
    # qdrant-client's local mode locks its directory; in memory, each worker has its own
    return url.startswith("qdrant+local://") and url != "qdrant+local://:memory:"


def bind_refusal(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port`` (tried now, as uvicorn will), or ``None``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # as uvicorn binds: a port left in TIME_WAIT by a previous run is free
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return (
                f"port {port} on {host} is already in use: stop what listens there, or choose another --port."
            )
        if exc.errno == errno.EACCES:
            return f"listening on port {port} needs privileges this process lacks: use a --port above 1023."
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"{host} is not an address of this machine: use --host 127.0.0.1, 0.0.0.0 or its own."
        return f"cannot listen on {host}:{port} ({exc.strerror or exc}): check --host and --port."
    return None
