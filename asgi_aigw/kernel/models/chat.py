"""OpenAI Chat Completions: request, response and stream chunk."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ._base import LenientWireModel, WireModel

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ImageURL(WireModel):
    url: str
    detail: str | None = None


class ContentPart(WireModel):
    """One part of a multi-part message: ``text``, ``image_url``, ``input_audio``, ``file``, ``refusal``."""

    type: str
    text: str | None = None
    image_url: ImageURL | None = None
    refusal: str | None = None


class FunctionCall(WireModel):
    name: str
    #: A JSON-encoded string, as OpenAI sends it.
    arguments: str


class ToolCall(WireModel):
    id: str
    type: str = "function"
    function: FunctionCall


class ChatMessage(WireModel):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None

    def text(self) -> str:
        """The message's text: the string content, or its text parts joined by newlines."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "\n".join(part.text for part in self.content if part.text is not None)


class FunctionDefinition(WireModel):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(WireModel):
    type: str = "function"
    function: FunctionDefinition


class StreamOptions(WireModel):
    include_usage: bool | None = None


class ChatCompletionRequest(WireModel):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None

    @property
    def output_limit(self) -> int | None:
        """The most output tokens the client allows (``max_completion_tokens`` wins, as at OpenAI)."""
        return self.max_completion_tokens or self.max_tokens


class UsageModel(LenientWireModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None


class ResponseMessage(LenientWireModel):
    role: str = "assistant"
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None


class Choice(LenientWireModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletion(LenientWireModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: UsageModel | None = None
    system_fingerprint: str | None = None


class Delta(LenientWireModel):
    role: str | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None


class ChunkChoice(LenientWireModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletionChunk(LenientWireModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageModel | None = None
    system_fingerprint: str | None = None
