"""Apps for bench/soak.py, built in each uvicorn process (``--factory``) from the environment:
``SOAK_UPSTREAM`` (FakeProvider's chat URL), ``SOAK_REDIS``, ``SOAK_KEY_PREFIX``, ``SOAK_CHDB`` (the
chDB directory of the request log) and ``SOAK_SPOOL`` (its spool)."""

from __future__ import annotations

import os
from collections import deque
from typing import Any

from _fullstack_apps import full_stack_config

from asgi_aigw import build_app
from asgi_aigw.logs import LogConfig
from asgi_aigw.testing import FakeProvider


def fake_provider() -> Any:
    """FakeProvider keeping only its last requests: its own memory must not grow over a long run."""
    fake = FakeProvider()
    fake.requests = deque(maxlen=100)  # type: ignore[assignment]
    return fake


def gateway() -> Any:
    """The full stack of bench/fullstack.py (tenant header, budgets and exact cache in Redis,
    regex-only redaction) with the request log in embedded chDB, spooled to disk."""
    config = full_stack_config(
        os.environ["SOAK_UPSTREAM"], os.environ["SOAK_REDIS"], os.environ["SOAK_KEY_PREFIX"]
    )
    config.log = LogConfig(store=f"chdb://{os.environ['SOAK_CHDB']}", spool_dir=os.environ["SOAK_SPOOL"])
    return build_app(config, env={})
