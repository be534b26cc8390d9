"""Canonical request and response models: the OpenAI Chat Completions and Embeddings wire format, and
the Anthropic Messages request the gateway also accepts.

Unknown fields are kept (``extra="allow"``) and forwarded, so a parameter this package does not know yet
still reaches the provider. Types are checked strictly: ``"stream": "yes"`` is a 400, as it is at OpenAI.
"""

from .chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    ContentPart,
    FunctionCall,
    FunctionDefinition,
    StreamOptions,
    Tool,
    ToolCall,
    UsageModel,
)
from .embeddings import Embedding, EmbeddingRequest, EmbeddingResponse
from .errors import validation_error_message
from .messages import ContentBlock, CountTokensRequest, MessageParam, MessagesRequest

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "Choice",
    "ChunkChoice",
    "ContentBlock",
    "ContentPart",
    "CountTokensRequest",
    "Embedding",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "FunctionCall",
    "FunctionDefinition",
    "MessageParam",
    "MessagesRequest",
    "StreamOptions",
    "Tool",
    "ToolCall",
    "UsageModel",
    "validation_error_message",
]
