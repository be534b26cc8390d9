"""OpenAI Embeddings: request and response."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import LenientWireModel, WireModel
from .chat import UsageModel


class EmbeddingRequest(WireModel):
    model: str = Field(min_length=1)
    #: A string, a list of strings, or pre-tokenised input (a list of ints or a list of lists of ints).
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    def texts(self) -> list[str]:
        """The input as a list of strings (empty for pre-tokenised input)."""
        if isinstance(self.input, str):
            return [self.input]
        return [item for item in self.input if isinstance(item, str)]


class Embedding(LenientWireModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingResponse(LenientWireModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: UsageModel | None = None
