"""The OpenTelemetry SDK set up from the standard ``OTEL_*`` environment variables, for ``aigw serve``.

A small subset of the SDK's own autoconfiguration (``opentelemetry-instrument``), enough for a gateway
that runs on its own: an app that hosts the gateway sets up OpenTelemetry itself.

- ``OTEL_SDK_DISABLED=true``: nothing is set up;
- ``OTEL_TRACES_EXPORTER``: ``otlp`` (the default), ``console``, ``none``, or several, comma-separated;
  ``otlp`` uses ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL``
  (``http/protobuf`` by default, or ``grpc``), and the exporter reads its own endpoint, headers and
  timeout variables;
- ``OTEL_SERVICE_NAME`` (default ``asgi-aigw``) and ``OTEL_RESOURCE_ATTRIBUTES``: the resource;
- ``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG``, read by the SDK's tracer provider;
- ``OTEL_PROPAGATORS``, read by the API (``tracecontext,baggage`` by default);
- ``OTEL_BSP_*``: the batch span processor's queue and delays.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..kernel.errors import ConfigError
from ..kernel.optional import MissingDependency

DEFAULT_SERVICE_NAME = "asgi-aigw"

#: The OTLP exporter of each protocol: its module, and the package that brings it.
_OTLP_MODULES = {
    "http/protobuf": (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry-exporter-otlp-proto-http",
    ),
    "grpc": (
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
        "opentelemetry-exporter-otlp-proto-grpc",
    ),
}


def disabled(env: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if env is None else env
    return environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def exporter_names(env: Mapping[str, str] | None = None) -> list[str]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (``otlp`` when unset), ``none`` left out."""
    environ = os.environ if env is None else env
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    return [n for n in names if n and n != "none"]


def wants_traces(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks ``aigw serve`` for traces: an exporter named in
    ``OTEL_TRACES_EXPORTER`` (other than ``none``), and the SDK not disabled."""
    environ = os.environ if env is None else env
    named = bool(environ.get("OTEL_TRACES_EXPORTER", "").strip())
    return named and bool(exporter_names(environ)) and not disabled(environ)


def configure_from_env(env: Mapping[str, str] | None = None) -> Any:
    """Install an SDK tracer provider as OpenTelemetry's global one, configured from ``env``
    (default ``os.environ``); return it (``None`` when ``OTEL_SDK_DISABLED=true``).

    Raises :class:`~asgi_aigw.kernel.optional.MissingDependency` when the SDK or a named exporter is
    not installed, :class:`~asgi_aigw.kernel.errors.ConfigError` for an exporter it does not know.
    """
    environ = os.environ if env is None else env
    if disabled(environ):
        return None
    sdk_trace = _require("opentelemetry.sdk.trace", "opentelemetry-sdk")
    export = _require("opentelemetry.sdk.trace.export", "opentelemetry-sdk")
    resources = _require("opentelemetry.sdk.resources", "opentelemetry-sdk")
    processors = [_processor(name, environ, export) for name in exporter_names(environ)]
    provider = sdk_trace.TracerProvider(resource=resources.Resource.create(_service(environ)))
    for processor in processors:
        provider.add_span_processor(processor)
    trace = _require("opentelemetry.trace", "opentelemetry-api")
    trace.set_tracer_provider(provider)
    return provider


def _service(env: Mapping[str, str]) -> dict[str, str]:
    """The service name: ``OTEL_SERVICE_NAME``, else one in ``OTEL_RESOURCE_ATTRIBUTES`` (which
    ``Resource.create`` reads), else ours."""
    if name := env.get("OTEL_SERVICE_NAME", "").strip():
        return {"service.name": name}
    if "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        return {}
    return {"service.name": DEFAULT_SERVICE_NAME}


def check_env(env: Mapping[str, str] | None = None) -> None:
    """Raise what :func:`configure_from_env` would for ``env``, setting nothing up: for a command to
    fail before its server starts rather than in each worker."""
    environ = os.environ if env is None else env
    if disabled(environ):
        return
    _require("opentelemetry.trace", "opentelemetry-api")
    _require("opentelemetry.sdk.trace", "opentelemetry-sdk")
    for name in exporter_names(environ):
        if name == "otlp":
            _require(*_OTLP_MODULES[_otlp_protocol(environ)])
        elif name != "console":
            raise _unknown_exporter(name)


def _otlp_protocol(env: Mapping[str, str]) -> str:
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = (protocol or "http/protobuf").strip()
    if protocol not in _OTLP_MODULES:
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported: use http/protobuf or grpc."
        )
    return protocol


def _unknown_exporter(name: str) -> ConfigError:
    return ConfigError(
        f"OTEL_TRACES_EXPORTER names '{name}', which aigw serve does not set up: use otlp, console or none "
        "(or set OpenTelemetry up in your own app and mount the gateway there)."
    )


def _processor(name: str, env: Mapping[str, str], export: Any) -> Any:
    if name == "console":
        # printed as each span ends: a console is for watching, not for throughput
        return export.SimpleSpanProcessor(export.ConsoleSpanExporter())
    if name == "otlp":
        module, package = _OTLP_MODULES[_otlp_protocol(env)]
        return export.BatchSpanProcessor(_require(module, package).OTLPSpanExporter())
    raise _unknown_exporter(name)


def _require(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"Traces need '{package}', which is not installed. Install it with: pip install {package} "
            "(or set OTEL_TRACES_EXPORTER=none)."
        ) from exc
