"""The gateway inside the project: one stack for the process, served by the URLconf at /ai/ and
called in process by the views, always as the user Django has logged in."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from asgi_aigw import build_stack, load_config
from asgi_aigw.integrations import GatewayEndpoint, Identity

config = load_config(settings.AIGW_CONFIG)
endpoint = GatewayEndpoint(build_stack(config), max_body_bytes=config.router.max_body_bytes)


def identity(request: HttpRequest) -> Identity | None:
    """Each user is their own tenant here, so each has a budget (gateway.yaml gives bob a small one)."""
    if not request.user.is_authenticated:
        return None
    return Identity(tenant=request.user.get_username(), user=request.user.get_username())
