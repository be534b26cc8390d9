"""The gateway's spans printed by OpenTelemetry's console exporter, inside a span of the app's own:
one chat request, answered in process by FakeProvider (no key, no network)."""

import asyncio

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from asgi_aigw import GatewayConfig, build_app
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

# the app's OpenTelemetry set-up (yours may export OTLP to a collector instead)
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
trace.set_tracer_provider(provider)

UPSTREAM = "http://fake-openai.local/v1"
config = GatewayConfig.model_validate(
    {
        "router": {
            "models": [
                {
                    "name": "gpt-4o-mini",
                    "deployments": [
                        {"model": "gpt-4o-mini", "base_url": UPSTREAM, "api_key": "sk-test-not-a-real-key"}
                    ],
                }
            ]
        },
        "trace": {},  # TraceMiddleware, outermost
    }
)
gateway = build_app(config, transports={UPSTREAM: StreamingASGITransport(FakeProvider())})


async def main() -> None:
    # the app's own span (an instrumented framework starts one per request): the gateway's join it
    with trace.get_tracer("my-app").start_as_current_span("POST /ask"):
        transport = httpx.ASGITransport(gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            response = await client.post(
                "/ai/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]},
            )
    print(response.json()["choices"][0]["message"]["content"])


if __name__ == "__main__":
    asyncio.run(main())
