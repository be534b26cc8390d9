"""A small shop's API with an AI gateway inside it, per user: a login that hands out bearer tokens,
the gateway served as a route of the app at ``/ai`` (OpenAI base URL ``http://HOST:PORT/ai/v1``,
API key: the user's token), and routes that ask a model in process as the logged-in user.

    uvicorn app:app --port 8000          # from this directory; README.md says what to set first

The gateway route goes through the app like any other: its CORS middleware, its ``current_user``
dependency and its exception handlers. Each user is their own tenant, so each has a budget.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import StreamingResponse
from fastapi.security import OAuth2PasswordBearer
from openai import AsyncOpenAI
from pydantic import BaseModel

from asgi_aigw import build_stack, load_config
from asgi_aigw.client import openai_client
from asgi_aigw.integrations import GatewayEndpoint, Identity
from asgi_aigw.integrations.fastapi import gateway_router

CONFIG = Path(os.environ.get("AIGW_CONFIG", Path(__file__).with_name("gateway.yaml")))
MODEL = os.environ.get("EXAMPLE_MODEL", "gpt-4o-mini")
PRODUCTS: list[dict[str, Any]] = []

# The gateway stack, built once: served at /ai below, and called in process by the shop's routes.
config = load_config(CONFIG)
stack = build_stack(config)
endpoint = GatewayEndpoint(stack, max_body_bytes=config.router.max_body_bytes)


@dataclass
class User:
    name: str
    password: str
    active: bool = True


# The shop's accounts (a database in a real app); gateway.yaml gives bob a small budget.
USERS = {name: User(name, "example-only") for name in ("alice", "bob")}
TOKENS: dict[str, str] = {}  # bearer token -> user name, handed out by /login
oauth2 = OAuth2PasswordBearer(tokenUrl="login", auto_error=False)


class Login(BaseModel):
    username: str
    password: str


# --8<-- [start:identity]
def current_user(token: Annotated[str | None, Depends(oauth2)]) -> User:
    user = USERS.get(TOKENS.get(token or "", ""))
    if user is None:
        raise HTTPException(401, "Log in first: POST /login", headers={"WWW-Authenticate": "Bearer"})
    if not user.active:
        raise HTTPException(403, "This account is disabled")
    return user


def current_identity(user: Annotated[User, Depends(current_user)]) -> Identity:
    """Who the gateway meters and logs: the user, who is also the tenant here."""
    return Identity(tenant=user.name, user=user.name)


# --8<-- [end:identity]


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    PRODUCTS[:] = [{"id": 1, "name": "Teapot", "price": 25}, {"id": 2, "name": "Kettle", "price": 40}]
    # the gateway starts and stops with the app: the request log is flushed at shutdown
    async with endpoint.lifespan():
        yield
    PRODUCTS.clear()


# --8<-- [start:router]
app = FastAPI(title="Example shop", lifespan=lifespan)
# Pages of these origins may call the API, /ai included, from the browser.
app.add_middleware(
    CORSMiddleware,
    allow_origins=os.environ.get("CORS_ALLOWED_ORIGINS", "http://localhost:3000").split(","),
    allow_methods=["GET", "POST"],
    allow_headers=["authorization", "content-type"],
)
app.include_router(gateway_router(endpoint, identity=Depends(current_identity)), prefix="/ai")
# --8<-- [end:router]


@app.post("/login")
async def login(form: Login) -> dict[str, str]:
    user = USERS.get(form.username)
    if user is None or not secrets.compare_digest(user.password, form.password):
        raise HTTPException(401, "Wrong username or password")
    token = secrets.token_urlsafe(24)
    TOKENS[token] = user.name
    return {"access_token": token, "token_type": "bearer"}


@app.get("/products")
async def products() -> list[dict[str, Any]]:
    return PRODUCTS


# --8<-- [start:inprocess]
def gateway_client(identity: Annotated[Identity, Depends(current_identity)]) -> AsyncOpenAI:
    """The official SDK calling the gateway in process as the logged-in user: no socket, no second
    authentication."""
    return openai_client(stack, identity)


@app.get("/describe/{product_id}")
async def describe(
    product_id: int, client: Annotated[AsyncOpenAI, Depends(gateway_client)]
) -> dict[str, Any]:
    product = next((p for p in PRODUCTS if p["id"] == product_id), None)
    if product is None:
        raise HTTPException(404, "No such product")
    completion = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": f"Describe the {product['name']} in one line."}]
    )
    return {"product": product["name"], "description": completion.choices[0].message.content}


@app.get("/describe/{product_id}/stream")
async def describe_stream(
    product_id: int, client: Annotated[AsyncOpenAI, Depends(gateway_client)]
) -> StreamingResponse:
    """The same, streamed to the browser piece by piece as the provider produces it."""
    product = next((p for p in PRODUCTS if p["id"] == product_id), {"name": "nothing"})
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"Describe the {product['name']} in one line."}],
        stream=True,
    )

    async def pieces() -> AsyncIterator[str]:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    return StreamingResponse(pieces(), media_type="text/plain; charset=utf-8")


# --8<-- [end:inprocess]
