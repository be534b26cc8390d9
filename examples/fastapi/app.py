"""A small shop's API with an AI gateway inside it: its own routes, and the whole gateway stack with the
router mounted at ``/ai`` (OpenAI base URL ``http://HOST:PORT/ai/v1``).

    uvicorn app:app --port 8000          # from this directory; README.md says what to set first

``build_app(config, app=api)`` puts the router at ``config.prefix`` in front of the FastAPI app and wraps
both in the middlewares ``gateway.yaml`` configures. They act on the gateway's routes only; the shop's
own routes pass through them untouched.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI

from asgi_aigw import build_app, load_config

CONFIG = Path(os.environ.get("AIGW_CONFIG", Path(__file__).with_name("gateway.yaml")))
MODEL = os.environ.get("EXAMPLE_MODEL", "gpt-4o-mini")
PRODUCTS: list[dict[str, Any]] = []


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    # The app's own startup still runs under the gateway: lifespan reaches the FastAPI app.
    PRODUCTS[:] = [{"id": 1, "name": "Teapot", "price": 25}, {"id": 2, "name": "Kettle", "price": 40}]
    yield
    PRODUCTS.clear()


api = FastAPI(title="Example shop", lifespan=lifespan)
_clients: dict[str, AsyncOpenAI] = {}


def gateway_client(request: Request) -> AsyncOpenAI:
    """An OpenAI client for this server's own gateway, made once per base URL (not per request)."""
    base_url = f"{str(request.base_url).rstrip('/')}/ai/v1"
    if base_url not in _clients:
        # The gateway knows the provider keys; the tenant header says who is asking.
        _clients[base_url] = AsyncOpenAI(
            base_url=base_url, api_key="unused", default_headers={"x-tenant-id": "shop-backend"}
        )
    return _clients[base_url]


@api.get("/products")
async def products() -> list[dict[str, Any]]:
    return PRODUCTS


@api.get("/describe/{product_id}")
async def describe(product_id: int, request: Request) -> dict[str, Any]:
    """A route of the shop's own that asks a model, through the gateway, like any other client would."""
    product = next((p for p in PRODUCTS if p["id"] == product_id), None)
    if product is None:
        return {"error": "no such product"}
    completion = await gateway_client(request).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": f"Describe the {product['name']} in one line."}]
    )
    return {"product": product["name"], "description": completion.choices[0].message.content}


@api.get("/describe/{product_id}/stream")
async def describe_stream(product_id: int, request: Request) -> StreamingResponse:
    """The same, streamed to the browser piece by piece as the provider produces it."""
    product = next((p for p in PRODUCTS if p["id"] == product_id), {"name": "nothing"})
    stream = await gateway_client(request).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"Describe the {product['name']} in one line."}],
        stream=True,
    )

    async def pieces() -> AsyncIterator[str]:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    return StreamingResponse(pieces(), media_type="text/plain; charset=utf-8")


# The ASGI app uvicorn serves: the gateway stack around the shop.
app = build_app(load_config(CONFIG), app=api)
