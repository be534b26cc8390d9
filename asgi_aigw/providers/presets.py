"""Named OpenAI-compatible servers: each a base URL, the environment variable its key is read from,
and the few places its API departs from OpenAI's (checked against each provider's docs).

A preset is the OpenAI adapter under another name, so ``provider: groq`` in a deployment (or the
``groq/MODEL`` name with prefix routing) needs no ``base_url``; a deployment's own ``base_url``,
``api_key`` and ``headers`` still win.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..kernel.errors import InvalidRequest
from ..kernel.models import ChatCompletionRequest
from .base import Deployment
from .openai import OpenAIAdapter


@dataclass(frozen=True, slots=True)
class Preset:
    """One OpenAI-compatible server."""

    name: str
    #: The API root requests go under (``{base_url}/chat/completions``).
    base_url: str
    #: The environment variable holding the key (the one the provider's own docs use).
    key_env: str
    #: Whether the server refuses a request without a key (a local vLLM does not need one).
    requires_api_key: bool = True
    #: Whether the server takes ``stream_options`` (usage in streams); without it, the option is
    #: left out and the usage the server sends on its last chunk is read.
    stream_options: bool = True
    #: Whether the server takes ``max_completion_tokens``; without it, a cap goes as ``max_tokens``.
    max_completion_tokens: bool = True
    #: Request fields the server refuses: left out, and named in ``x-aigw-dropped-params`` when they
    #: asked for something.
    unsupported: tuple[str, ...] = ()
    #: Whether the server refuses a message's ``name`` (left out and named likewise).
    message_names: bool = True
    #: Whether the server answers one choice only (``n`` > 1 is a 400 before anything is sent).
    single_choice: bool = False


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        # vLLM's OpenAI-compatible server (``vllm serve``; ``--api-key`` or VLLM_API_KEY guards it)
        Preset("vllm", "http://localhost:8000/v1", "VLLM_API_KEY", requires_api_key=False),
        # Groq answers a 400 to these (console.groq.com/docs/openai, "Currently Unsupported")
        Preset(
            "groq",
            "https://api.groq.com/openai/v1",
            "GROQ_API_KEY",
            unsupported=("logprobs", "top_logprobs", "logit_bias"),
            message_names=False,
            single_choice=True,
        ),
        Preset("deepseek", "https://api.deepseek.com", "DEEPSEEK_API_KEY"),
        # Mistral refuses fields it does not know (422 extra_forbidden), these two among them
        Preset(
            "mistral",
            "https://api.mistral.ai/v1",
            "MISTRAL_API_KEY",
            stream_options=False,
            max_completion_tokens=False,
        ),
        # OpenRouter's optional HTTP-Referer and X-Title headers go in the deployment's headers
        Preset("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
        Preset("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    )
}


class OpenAICompatibleAdapter(OpenAIAdapter):
    """The OpenAI adapter for one :class:`Preset`."""

    def __init__(self, preset: Preset) -> None:
        super().__init__(
            name=preset.name, default_base_url=preset.base_url, requires_api_key=preset.requires_api_key
        )
        self.preset = preset

    def dropped_params(self, request: ChatCompletionRequest, body: Mapping[str, Any]) -> list[str]:
        """The refused fields that asked for something (a ``logprobs: false`` asks for nothing)."""
        preset = self.preset
        names = [name for name in preset.unsupported if body.get(name) not in (None, False, {}, 0)]
        messages = body.get("messages")
        named = isinstance(messages, list) and any(isinstance(m, dict) and m.get("name") for m in messages)
        if named and not preset.message_names:
            names.append("name")
        return names

    def chat_payload(self, deployment: Deployment, body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        preset = self.preset
        n = body.get("n")
        if preset.single_choice and isinstance(n, int) and n > 1:
            raise InvalidRequest(
                f"{preset.name} answers one choice per request: send n: 1 (or leave n out), or send "
                "the request several times.",
                param="n",
            )
        payload = super().chat_payload(deployment, body, stream=stream)
        for name in preset.unsupported:
            payload.pop(name, None)
        messages = payload.get("messages")
        if not preset.message_names and isinstance(messages, list):
            payload["messages"] = [
                {k: v for k, v in m.items() if k != "name"} if isinstance(m, dict) else m for m in messages
            ]
        if not self.preset.stream_options:
            payload.pop("stream_options", None)
        if not self.preset.max_completion_tokens and "max_completion_tokens" in payload:
            cap = payload.pop("max_completion_tokens")
            legacy = payload.get("max_tokens")
            both = isinstance(cap, int) and isinstance(legacy, int)
            payload["max_tokens"] = min(cap, legacy) if both else (cap if cap is not None else legacy)
        return payload
