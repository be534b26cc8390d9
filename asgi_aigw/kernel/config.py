"""What every configuration section shares: the one base class and the request-body limits."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .body import DEFAULT_MAX_BODY_BYTES


class ConfigSection(BaseModel):
    """The base of every section of the gateway's configuration: unknown keys are errors, so a
    misspelt option is reported rather than ignored."""

    model_config = ConfigDict(extra="forbid")


class BodyLimits(ConfigSection):
    """The request-body settings of a layer that reads the body (it is read once, by the first)."""

    #: Larger request bodies are refused with 413.
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
