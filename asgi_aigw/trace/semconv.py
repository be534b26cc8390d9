"""Names from the OpenTelemetry GenAI semantic conventions, and how the gateway's values map to them.

Spelt here rather than imported from ``opentelemetry-semantic-conventions`` (whose GenAI names are
experimental and move between releases): the one place to change when the conventions do.
"""

from __future__ import annotations

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_STREAM = "gen_ai.request.stream"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
ERROR_TYPE = "error.type"
HTTP_METHOD = "http.request.method"
HTTP_STATUS = "http.response.status_code"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"

#: ``gen_ai.operation.name`` of each gateway route (the Messages and Responses APIs are chats);
#: routes without one (count_tokens, models) are no GenAI operation.
OPERATIONS: dict[str, str] = {
    "chat": "chat",
    "messages": "chat",
    "responses": "chat",
    "embeddings": "embeddings",
}

#: ``gen_ai.provider.name`` of each provider adapter: the conventions' well-known values (Gemini's
#: API is ``gcp.gemini``); an adapter they do not name (ollama, one an app registered) is its own name.
PROVIDERS: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
}


def provider_name(provider: str) -> str:
    return PROVIDERS.get(provider, provider)
