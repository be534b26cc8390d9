"""RedactConfig: which PII to look for, what to do with it, and how hard to look.

```yaml
redact:
  regex_only: false               # true: pattern recognizers only, no NER model (no PERSON)
  entities: [PERSON, EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, US_SSN, IBAN_CODE, IP_ADDRESS]
  actions: {US_SSN: block, IP_ADDRESS: mask}   # others: default_action
  default_action: pseudonymize
  score_threshold: 0.4
  allow_list: [support@example.com]
  recognizers:
    - name: employee_id
      entity: EMPLOYEE_ID
      patterns: [{regex: "\\bEMP-\\d{6}\\b", score: 0.9}]
```
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..kernel.config import BodyLimits, ConfigSection

Action = Literal["pseudonymize", "mask", "block", "allow"]

#: Entities looked for by default. PERSON needs the NER model and is skipped in regex-only mode.
DEFAULT_ENTITIES: tuple[str, ...] = (
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "US_SSN",
    "IBAN_CODE",
    "IP_ADDRESS",
)

#: Every chat role by default: assistant turns in the history carry values restored in earlier answers.
DEFAULT_ROLES: tuple[str, ...] = ("system", "developer", "user", "assistant", "tool", "function")

#: The regions whose national phone formats are recognised (any number written with ``+`` is found
#: whatever the region list). Presidio's default list has eight regions; each costs a full pass.
DEFAULT_PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "IN")

_ENTITY_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


class RegexPattern(ConfigSection):
    regex: str = Field(min_length=1)
    #: Confidence given to a match (compared with ``score_threshold``).
    score: float = Field(default=0.8, ge=0, le=1)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class RegexRecognizerConfig(ConfigSection):
    """An extra pattern recognizer (a Presidio ``PatternRecognizer``)."""

    name: str = Field(min_length=1)
    #: The entity type it reports, in upper case (``EMPLOYEE_ID``): it names the placeholders.
    entity: str
    patterns: list[RegexPattern] = Field(min_length=1)
    #: Words that raise a match's score when they appear just before it.
    context: list[str] = Field(default_factory=list)

    @field_validator("entity")
    @classmethod
    def _entity_name(cls, value: str) -> str:
        if not _ENTITY_NAME.match(value):
            raise ValueError("entity must be upper case letters, digits and underscores, like EMPLOYEE_ID")
        return value


class RedactConfig(BodyLimits):
    """The ``redact`` section of the gateway configuration (see docs/redaction.md)."""

    #: Pattern recognizers only, with no NER model: ~1 ms per KB instead of ~10, and no PERSON.
    regex_only: bool = False
    entities: list[str] = Field(default_factory=lambda: list(DEFAULT_ENTITIES))
    #: Action per entity type; types not listed get ``default_action``.
    actions: dict[str, Action] = Field(default_factory=dict)
    default_action: Action = "pseudonymize"
    #: Findings scoring below this are ignored (Presidio scores: 0.4 phone, 0.5 SSN, 0.85 NER, 1.0
    #: checksum-validated card/IBAN/e-mail).
    score_threshold: float = Field(default=0.4, ge=0, le=1)
    language: str = "en"
    #: Values never treated as PII (exact strings, or regular expressions with allow_list_match: regex).
    allow_list: list[str] = Field(default_factory=list)
    allow_list_match: Literal["exact", "regex"] = "exact"
    recognizers: list[RegexRecognizerConfig] = Field(default_factory=list)
    #: Regions whose national phone number formats are recognised.
    phone_regions: list[str] = Field(default_factory=lambda: list(DEFAULT_PHONE_REGIONS))
    #: Roles whose messages are scanned (a role left out is sent, and logged, as written; a role the
    #: request's API does not define is refused with 400 whatever this says). Messages requests
    #: read ``user`` and ``assistant`` from the same list; Responses requests their message roles, and
    #: ``assistant`` for function calls and reasoning items, ``tool`` for function call outputs.
    roles: list[str] = Field(default_factory=lambda: list(DEFAULT_ROLES))
    #: Scan the arguments of tool calls in assistant messages (they carry restored values too).
    scan_tool_arguments: bool = True
    #: Scan embeddings requests (placeholders then shape the vectors). False: they pass untouched,
    #: and the request log stores no body for them.
    scan_embeddings: bool = True
    #: Scan JSON answers for PII the request did not contain and mask it (one more analysis per
    #: answer, in a worker thread). Streams are not scanned: that would mean buffering them.
    scan_answer: bool = False
    #: How masked values read: ``{entity_type}`` is replaced by the type.
    mask_format: str = "<{entity_type}>"
    #: Run NER only on the sentences that could hold a name (a capitalised word that is not a
    #: common sentence opener). False: NER over the whole text (several times slower).
    ner_gate: bool = True
    #: Analysis results kept per message (keyed by a keyed hash of the text; no text is kept).
    cache_size: int = Field(default=4096, ge=0)
    #: Worker threads analysing at once (Presidio holds the GIL most of the time: more rarely helps).
    threads: int = Field(default=1, ge=1)
    #: Texts shorter than this are not analysed (no PII fits in them).
    min_length: int = Field(default=3, ge=0)

    @field_validator("entities")
    @classmethod
    def _entity_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _ENTITY_NAME.match(name):
                raise ValueError(f"{name!r} is not an entity type (upper case, like EMAIL_ADDRESS)")
        return list(dict.fromkeys(value))

    @field_validator("mask_format")
    @classmethod
    def _mask_format(cls, value: str) -> str:
        try:
            value.format(entity_type="X")
        except (KeyError, IndexError, ValueError):
            raise ValueError("mask_format may only use the {entity_type} field") from None
        return value

    @model_validator(mode="after")
    def _custom_entities_scanned(self) -> RedactConfig:
        # an extra recognizer's entity is looked for even when `entities` does not list it
        for recognizer in self.recognizers:
            if recognizer.entity not in self.entities:
                self.entities.append(recognizer.entity)
        return self

    def action_for(self, entity: str) -> Action:
        return self.actions.get(entity, self.default_action)

    def scanned_entities(self) -> list[str]:
        """The entities to ask the analyzer for (``allow`` ones need not be found)."""
        return [e for e in self.entities if self.action_for(e) != "allow"]
