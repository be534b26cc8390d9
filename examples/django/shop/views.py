"""Views that call the gateway through the ``openai`` SDK, on this server's own ``/ai/v1``.

They are async, so a view waiting for the gateway does not hold a worker thread, and the gateway (on the
same server) answers meanwhile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from openai import AsyncOpenAI

_clients: dict[str, AsyncOpenAI] = {}


def gateway_client(request: HttpRequest) -> AsyncOpenAI:
    """One OpenAI client per base URL for the whole process (not one per request)."""
    base_url = request.build_absolute_uri(f"{settings.GATEWAY_PREFIX}/v1")
    if base_url not in _clients:
        # The gateway holds the provider keys; the tenant header says who is asking.
        _clients[base_url] = AsyncOpenAI(
            base_url=base_url, api_key="unused", default_headers={"x-tenant-id": "django-site"}
        )
    return _clients[base_url]


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        "Ask something: /ask/?q=Hello (JSON) or /ask/stream/?q=Hello (streamed). "
        f"The gateway's OpenAI API is at {settings.GATEWAY_PREFIX}/v1.\n",
        content_type="text/plain",
    )


async def ask(request: HttpRequest) -> JsonResponse:
    question = request.GET.get("q", "Hello!")
    completion = await gateway_client(request).chat.completions.create(
        model=settings.GATEWAY_MODEL, messages=[{"role": "user", "content": question}]
    )
    return JsonResponse({"question": question, "answer": completion.choices[0].message.content})


async def ask_stream(request: HttpRequest) -> StreamingHttpResponse:
    question = request.GET.get("q", "Hello!")
    stream = await gateway_client(request).chat.completions.create(
        model=settings.GATEWAY_MODEL, messages=[{"role": "user", "content": question}], stream=True
    )

    async def pieces() -> AsyncIterator[str]:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    return StreamingHttpResponse(pieces(), content_type="text/plain; charset=utf-8")
