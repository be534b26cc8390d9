"""The few fields of an OpenAI Responses request the cache acts on, and whether it may be cached."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Request fields echoed in the ``response`` object that are not part of the key: a hit echoes the
#: asking request's values, not those of the request that stored the answer.
ECHOED_FIELDS = ("metadata", "user", "safety_identifier", "prompt_cache_key", "prompt_cache_retention")


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


@dataclass(frozen=True, slots=True)
class ResponsesView:
    """What the cache needs from a ``POST /v1/responses`` body (the ``openai`` SDK's
    ``ResponseCreateParams``)."""

    model: str
    stream: bool
    temperature: float
    #: Why the request may not be cached (a field naming server-side state, ...); ``None`` if it may.
    bypass: str | None
    #: The :data:`ECHOED_FIELDS` of the request, as a hit's ``response`` echoes them.
    echo: dict[str, Any] = field(default_factory=dict)
    #: Responses streams always carry usage (in their final event).
    include_usage: bool = True

    @classmethod
    def read(cls, data: Any) -> ResponsesView | None:
        """From a body whose fields involved have OpenAI's types; ``None`` otherwise (then the app
        answers it, with its own 400, uncached)."""
        if not isinstance(data, dict):
            return None
        get = data.get
        model, stream, temperature = get("model"), get("stream"), get("temperature")
        if (
            not isinstance(model, str)
            or not model
            or not isinstance(stream, bool | None)
            or not (temperature is None or (_is_number(temperature) and 0 <= temperature <= 2))
            or not isinstance(get("input"), str | list | None)
            or not isinstance(get("instructions"), str | list | None)
            or not isinstance(get("store"), bool | None)
            or not isinstance(get("background"), bool | None)
            or not isinstance(get("metadata"), dict | None)
            or not isinstance(get("user"), str | None)
            or not isinstance(get("tools"), list | None)
            or not (get("top_logprobs") is None or type(get("top_logprobs")) is int)
        ):
            return None
        return cls(
            model=model,
            stream=bool(stream),
            # absent: the provider's default, cached whatever max_temperature says (as for chat)
            temperature=float(temperature or 0.0),
            bypass=_bypass(data),
            echo={name: data.get(name) for name in ECHOED_FIELDS},
        )

    def cacheable(self, max_temperature: float | None) -> bool:
        """Whether the answer may be looked up and stored: not a stateful request (see :func:`_bypass`),
        nor one above ``max_temperature``."""
        if self.bypass is not None:
            return False
        return max_temperature is None or self.temperature <= max_temperature


def _bypass(data: dict[str, Any]) -> str | None:
    """The field that keeps a request out of the cache, or ``None``.

    - ``previous_response_id``, ``conversation``, ``prompt``: the answer depends on state kept by the
      provider (earlier turns, a stored prompt template that can change), not in the body;
    - ``background: true``: the answer is a queued response to poll, not the answer itself;
    - ``store`` not ``false`` (OpenAI's default is ``true``): the provider keeps the response under its
      id for later ``previous_response_id`` or retrieval, and a replay's id is one it never stored;
    - ``top_logprobs``: the answer carries per-token probabilities a replay would repeat as if new;
    - no ``input``: nothing is asked of the model but what the provider holds.
    """
    get = data.get
    for name in ("previous_response_id", "conversation", "prompt"):
        if get(name) is not None:
            return name
    if get("background") is True:
        return "background"
    if get("store") is not False:
        return "store"
    if get("top_logprobs"):
        return "top_logprobs"
    if not get("input"):
        return "input"
    return None
