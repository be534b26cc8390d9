"""The fake's Azure OpenAI wire format: the OpenAI format at deployment URLs, with Azure's checks.

- ``/openai/deployments/{deployment}/chat/completions?api-version=V`` and ``.../embeddings``;
- ``/openai/v1/chat/completions`` and ``/openai/v1/embeddings`` (the deployment is the body's
  ``model``; no dated ``api-version``);
- the key in the ``api-key`` header (or an Entra ID token in ``authorization``), else 401;
- a dated path without ``api-version`` is Azure's 404 ``Resource not found``; a version it does not
  know, a 400 ``API version not supported``; an unknown deployment, 404 ``DeploymentNotFound``;
- answers carry the content filter's verdicts; ``FakeBehaviour.content_filter`` makes the filter
  block the prompt (400 ``content_filter``), withhold the answer, or stop it part way.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ..kernel.types import Receive, Send
from . import _openai_format as openai_format

if TYPE_CHECKING:
    from .fake_provider import FakeBehaviour, FakeProvider, ReceivedRequest

_DATED = re.compile(r"^/openai/deployments/(?P<deployment>[^/]+)/(?P<endpoint>chat/completions|embeddings)$")
_V1 = re.compile(r"^/openai/v1/(?P<endpoint>chat/completions|embeddings)$")
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")

_ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
    "key for an active subscription and use a correct regional API endpoint for your resource."
)
_NO_DEPLOYMENT = (
    "The API deployment for this resource does not exist. If you created the deployment within the "
    "last 5 minutes, please wait a moment and try again."
)


def is_azure_path(path: str) -> bool:
    return _DATED.match(path) is not None or _V1.match(path) is not None


def _problem(fake: FakeProvider, request: ReceivedRequest) -> tuple[int, dict[str, Any]] | None:
    """Azure's answer to a request it refuses before reading the body, if it refuses it."""
    headers = request.headers
    if not headers.get("api-key") and not headers.get("authorization", "").startswith("Bearer "):
        return 401, {"error": {"code": "401", "message": _ACCESS_DENIED}}
    versions = parse_qs(request.query).get("api-version")
    dated = _DATED.match(request.path)
    if dated is not None:
        if not versions:
            return 404, {"error": {"code": "404", "message": "Resource not found"}}
        if not _VERSION.match(versions[0]):
            return 400, {"error": {"code": "BadRequest", "message": "API version not supported"}}
        deployment = dated.group("deployment")
    else:
        # the v1 API takes no dated version (``preview`` opts in to preview features)
        if versions and versions[0] not in ("preview", "latest"):
            return 400, {"error": {"code": "BadRequest", "message": "API version not supported"}}
        body = request.json if isinstance(request.json, dict) else {}
        deployment = str(body.get("model") or "")
    if fake.azure_deployments and deployment not in fake.azure_deployments:
        return 404, {"error": {"code": "DeploymentNotFound", "message": _NO_DEPLOYMENT}}
    return None


async def dispatch(
    fake: FakeProvider, request: ReceivedRequest, behaviour: FakeBehaviour, receive: Receive, send: Send
) -> None:
    problem = _problem(fake, request)
    if problem is not None:
        await fake.send_json(send, *problem)
        return
    dated = _DATED.match(request.path)
    body = request.json if isinstance(request.json, dict) else {}
    deployment = dated.group("deployment") if dated else str(body.get("model") or "")
    flavour = openai_format.Flavour(
        error=openai_format.azure_error,
        # answers name the model behind the deployment, as Azure's do
        model=fake.azure_deployments.get(deployment, deployment),
        model_required=dated is None,
        filter_results=True,
    )
    endpoint = dated or _V1.match(request.path)
    assert endpoint is not None
    if endpoint.group("endpoint") == "embeddings":
        await openai_format.embeddings(fake, request, behaviour, send, flavour)
    else:
        await openai_format.chat(fake, request, behaviour, receive, send, flavour)
