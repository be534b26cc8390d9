"""``aigw serve`` and the standard ``OTEL_*`` variables: ``OTEL_TRACES_EXPORTER=console`` prints the
gateway's spans; a missing SDK or an exporter it does not set up is one clear line before the banner."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from asgi_aigw.cli import main
from asgi_aigw.cli.serve import with_env_traces
from asgi_aigw.config import GatewayConfig
from asgi_aigw.kernel.errors import ConfigError
from asgi_aigw.kernel.optional import MissingDependency
from asgi_aigw.testing.server import free_port, wait_for_server
from asgi_aigw.trace import TraceConfig, configure_from_env
from asgi_aigw.trace.setup import check_env


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The providers ``configure_from_env`` installs, caught before they become the process's global one."""
    caught: list[Any] = []
    monkeypatch.setattr(trace, "set_tracer_provider", caught.append)
    return caught


def processors(provider: TracerProvider) -> list[Any]:
    return list(provider._active_span_processor._span_processors)


def test_console_sets_up_a_provider_that_prints_each_span(installed: list[Any]) -> None:
    provider = configure_from_env({"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "my-gateway"})
    assert installed == [provider]
    (processor,) = processors(provider)
    assert isinstance(processor, SimpleSpanProcessor)
    assert provider.resource.attributes["service.name"] == "my-gateway"


def test_the_service_is_named_after_the_gateway_by_default(installed: list[Any]) -> None:
    provider = configure_from_env({"OTEL_TRACES_EXPORTER": "none"})
    assert processors(provider) == []
    assert provider.resource.attributes["service.name"] == "asgi-aigw"


def test_a_disabled_sdk_sets_nothing_up(installed: list[Any]) -> None:
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}
    assert configure_from_env(env) is None
    assert installed == []
    assert with_env_traces(GatewayConfig(), env).trace is None


def test_an_exporter_it_does_not_set_up_is_a_config_error(installed: list[Any]) -> None:
    with pytest.raises(ConfigError, match=r"'zipkin'.*otlp, console or none"):
        configure_from_env({"OTEL_TRACES_EXPORTER": "console,zipkin"})
    with pytest.raises(ConfigError, match="'zipkin'"):
        check_env({"OTEL_TRACES_EXPORTER": "zipkin"})
    assert installed == []


def test_an_exporter_variable_turns_traces_on_for_serve() -> None:
    assert with_env_traces(GatewayConfig(), {}).trace is None
    assert with_env_traces(GatewayConfig(), {"OTEL_TRACES_EXPORTER": "none"}).trace is None
    assert with_env_traces(GatewayConfig(), {"OTEL_TRACES_EXPORTER": "console"}).trace == TraceConfig()
    own = GatewayConfig(trace=TraceConfig(propagate=False))
    assert with_env_traces(own, {"OTEL_TRACES_EXPORTER": "console"}).trace is own.trace


def test_serve_without_the_sdk_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    assert main(["serve", "--demo", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("aigw serve: ")
    assert "pip install opentelemetry-sdk" in err[0]
    assert "OTEL_TRACES_EXPORTER=none" in err[0]


def test_a_missing_otlp_exporter_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", None)
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    with pytest.raises(MissingDependency, match="opentelemetry-exporter-otlp-proto-grpc"):
        check_env(env)


@pytest.mark.e2e
def test_serve_with_the_console_exporter_prints_the_gateways_spans(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "aigw-e2e"}
    command = [sys.executable, "-m", "asgi_aigw.cli", "serve", "--demo", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--log-level", "warning"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_for_server(port, process)
        response = httpx.post(
            f"http://127.0.0.1:{port}/ai/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]},
            timeout=30,
        )
        assert response.status_code == 200
        time.sleep(0.2)
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert '"name": "chat gpt-4o-mini"' in output
    assert '"gen_ai.provider.name": "openai"' in output
    assert '"aigw.outcome": "ok"' in output  # the attempt's span
    assert '"service.name": "aigw-e2e"' in output
