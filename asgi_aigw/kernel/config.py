"""What every configuration section shares: the one base class and the request-body limits."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .body import DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES


class ConfigSection(BaseModel):
    """The base of every section of the gateway's configuration: unknown keys are errors, so a
    misspelt option is reported rather than ignored, and every number is finite (YAML's ``.inf`` as a
    cache TTL or a price passed validation, then failed in the middle of a request)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class BodyLimits(ConfigSection):
    """The request-body settings of a layer that reads the body (it is read once, by the first)."""

    #: Larger request bodies are refused with 413.
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    #: Seconds the whole request body may take to arrive; a client that stalls gets 408.
    body_timeout: float = Field(default=DEFAULT_BODY_TIMEOUT, gt=0)
