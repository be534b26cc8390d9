"""Anthropic Messages (``POST /v1/messages``): the request, as documented at docs.anthropic.com.

Content blocks are one model with the fields of every documented block type (``text``, ``image``,
``document``, ``tool_use``, ``tool_result``, ``thinking``, ``redacted_thinking``, ...) rather than a tagged
union: a block type Anthropic adds later still validates and passes through to an Anthropic deployment;
the translation to other providers refuses the types it does not know, naming them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ._base import WireModel


class ContentBlock(WireModel):
    """One content block of a message, of ``system``, or of a ``tool_result``."""

    type: str = Field(min_length=1)
    text: str | None = None
    #: ``image`` and ``document``: ``{"type": "base64" | "url" | "text" | ..., ...}``.
    source: dict[str, Any] | None = None
    #: ``tool_use``
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    #: ``tool_result``
    tool_use_id: str | None = None
    content: str | list[ContentBlock] | None = None
    is_error: bool | None = None
    #: ``thinking`` / ``redacted_thinking``
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None
    cache_control: dict[str, Any] | None = None


class MessageParam(WireModel):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class ToolParam(WireModel):
    """A client tool (``input_schema``) or a server tool (a versioned ``type`` such as ``bash_20250124``)."""

    name: str = Field(min_length=1)
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    cache_control: dict[str, Any] | None = None


class ToolChoice(WireModel):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingConfig(WireModel):
    """``{"type": "enabled", "budget_tokens": N}``, ``{"type": "disabled"}``, or a newer mode."""

    type: str = Field(min_length=1)
    budget_tokens: int | None = None


class MessagesMetadata(WireModel):
    user_id: str | None = None


class OutputFormat(WireModel):
    """``output_config.format``: ``{"type": "json_schema", "schema": {...}}`` (structured outputs)."""

    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(WireModel):
    format: OutputFormat | None = None


class MessagesRequest(WireModel):
    model: str = Field(min_length=1)
    messages: list[MessageParam] = Field(min_length=1)
    #: Required, as at Anthropic.
    max_tokens: int = Field(ge=1)
    system: str | list[ContentBlock] | None = None
    metadata: MessagesMetadata | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None


class CountTokensRequest(WireModel):
    """``POST /v1/messages/count_tokens``: a Messages request without ``max_tokens`` or sampling."""

    model: str = Field(min_length=1)
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[ContentBlock] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
