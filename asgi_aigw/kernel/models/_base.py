from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class WireModel(BaseModel):
    """Strict types, unknown fields kept and forwarded."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)


class LenientWireModel(BaseModel):
    """For provider answers: we accept what providers send; unknown fields kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
