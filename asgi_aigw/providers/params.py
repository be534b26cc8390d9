"""What happens to each OpenAI request parameter at each provider: sent (and as what), dropped with the
``x-aigw-dropped-params`` answer header, or refused with a 400.

This table is the one in docs/providers.md (``markdown_table`` writes it; a test checks the page holds
it) and the tests send every row's parameter through the adapters and check the behaviour it states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Handling = Literal["sent", "dropped", "400"]


@dataclass(frozen=True, slots=True)
class Rule:
    """How a provider handles one parameter. For ``sent``, ``where`` is the native field(s) it becomes
    (dotted paths into the native request body, comma-separated); ``note`` says what else to know."""

    handling: Handling
    where: str = ""
    note: str = ""


#: The rows of the table, in order: an OpenAI parameter (or a pair that goes together).
PARAMETERS = (
    "response_format",
    "n",
    "logprobs",
    "metadata",
    "service_tier",
    "message name",
    "seed",
    "stop",
    "user",
    "tools/tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "temperature/top_p",
    "presence_penalty/frequency_penalty",
    "logit_bias",
)

_NO_LOGPROBS = "no token log probabilities (`top_logprobs` too)"

RULES: dict[str, dict[str, Rule]] = {
    "openai": {name: Rule("sent", note="as the client sent it") for name in PARAMETERS},
    # Azure OpenAI takes OpenAI's request as it is; a deployment's model refuses what it does not support
    "azure": {name: Rule("sent", note="as the client sent it") for name in PARAMETERS},
    # Groq refuses these with a 400 (its OpenAI compatibility page), so they are left out or refused here
    "groq": {
        **{name: Rule("sent", note="as the client sent it") for name in PARAMETERS},
        "n": Rule("400", note="`n` > 1: one choice per request (`n: 1` is accepted)"),
        "logprobs": Rule("dropped", note="Groq refuses `logprobs` and `top_logprobs`"),
        "message name": Rule("dropped", note="Groq refuses `messages[].name`"),
        "logit_bias": Rule("dropped", note="Groq refuses `logit_bias`"),
    },
    "anthropic": {
        "response_format": Rule(
            "sent",
            "output_config.format",
            "`json_schema` → structured outputs, the schema converted to the subset Anthropic decodes "
            "(a map or a recursive schema is a 400); `json_object` is a 400 (no JSON mode without a schema)",
        ),
        "n": Rule("400", note="`n` > 1: one choice per request (`n: 1` is accepted)"),
        "logprobs": Rule("dropped", note=_NO_LOGPROBS),
        "metadata": Rule("dropped", note="Anthropic's `metadata` takes only `user_id` (from `user`)"),
        "service_tier": Rule(
            "sent",
            "service_tier",
            "`auto` → `auto`, `default` → `standard_only`; `flex`, `scale` and `priority` have no "
            "Anthropic equivalent and are dropped with the header",
        ),
        "message name": Rule("dropped", note="no participant names (a tool result's name is not affected)"),
        "seed": Rule("dropped", note="no seed"),
        "stop": Rule("sent", "stop_sequences"),
        "user": Rule("sent", "metadata.user_id"),
        "tools/tool_choice": Rule(
            "sent", "tools,tool_choice", "`required` → `any`, a named function → `tool`"
        ),
        "parallel_tool_calls": Rule(
            "sent", "tool_choice.disable_parallel_tool_use", "`false` only (`true` is the default)"
        ),
        "reasoning_effort": Rule(
            "sent",
            "thinking.budget_tokens",
            "extended thinking: `minimal`/`low` 1024, `medium` 2048, `high` 4096, `xhigh` 8192 tokens, "
            "at most half of `max_tokens` (below 2048 is a 400); `none` sends no thinking; see "
            "[Reasoning](#reasoning-and-thinking)",
        ),
        "temperature/top_p": Rule(
            "sent",
            "temperature",
            "`temperature` above 1 is a 400 (Anthropic's range is 0-1); with both, only `temperature` "
            "is sent (current models refuse the pair) and `top_p` is dropped with the header",
        ),
        "presence_penalty/frequency_penalty": Rule("dropped", note="no penalties"),
        "logit_bias": Rule("dropped", note="no token biases"),
    },
    "gemini": {
        "response_format": Rule(
            "sent",
            "generationConfig.responseMimeType,generationConfig.responseSchema",
            "`json_schema`'s schema converted to Gemini's Schema subset, as tool schemas are",
        ),
        "n": Rule("sent", "generationConfig.candidateCount", "`n` > 1 with `stream` is a 400"),
        "logprobs": Rule(
            "sent",
            "generationConfig.responseLogprobs,generationConfig.logprobs",
            "`top_logprobs` → `logprobs`; `logprobsResult` → `choices[].logprobs`; see "
            "[Log probabilities](#log-probabilities)",
        ),
        "metadata": Rule("dropped", note="no request metadata"),
        "service_tier": Rule("dropped", note="no service tiers"),
        "message name": Rule("dropped", note="no participant names (a tool result's name is not affected)"),
        "seed": Rule("sent", "generationConfig.seed"),
        "stop": Rule("sent", "generationConfig.stopSequences"),
        "user": Rule("dropped", note="no end-user field"),
        "tools/tool_choice": Rule(
            "sent",
            "tools.0.functionDeclarations,toolConfig.functionCallingConfig",
            "schemas converted to Gemini's Schema subset (a recursive schema is a 400)",
        ),
        "parallel_tool_calls": Rule("dropped", note="`false` only: Gemini cannot be held to one call"),
        "reasoning_effort": Rule(
            "sent",
            "generationConfig.thinkingConfig",
            "`thinkingLevel` for Gemini 3, `thinkingBudget` before; `includeThoughts` unless `none`",
        ),
        "temperature/top_p": Rule("sent", "generationConfig.temperature,generationConfig.topP"),
        "presence_penalty/frequency_penalty": Rule(
            "sent", "generationConfig.presencePenalty,generationConfig.frequencyPenalty"
        ),
        "logit_bias": Rule("dropped", note="no token biases"),
    },
    "ollama": {
        "response_format": Rule("sent", "format", '`"json"`, or the JSON schema'),
        "n": Rule("400", note="`n` > 1: one choice per request (`n: 1` is accepted)"),
        "logprobs": Rule(
            "sent",
            "logprobs,top_logprobs",
            "Ollama 0.12.11 and later; see [Log probabilities](#log-probabilities)",
        ),
        "metadata": Rule("dropped", note="no request metadata"),
        "service_tier": Rule("dropped", note="no service tiers"),
        "message name": Rule("dropped", note="no participant names (a tool result's name → `tool_name`)"),
        "seed": Rule("sent", "options.seed"),
        "stop": Rule("sent", "options.stop"),
        "user": Rule("dropped", note="no end-user field"),
        "tools/tool_choice": Rule(
            "sent",
            "tools",
            "`tool_choice: none` leaves the tools out; `required` or a named function is dropped with "
            "the header (Ollama cannot force a call)",
        ),
        "parallel_tool_calls": Rule("dropped", note="`false` only"),
        "reasoning_effort": Rule(
            "sent",
            "think",
            '`none` → `false`, `minimal`/`low` → `"low"`, `medium`, `high`/`xhigh` → `"high"`',
        ),
        "temperature/top_p": Rule("sent", "options.temperature,options.top_p"),
        "presence_penalty/frequency_penalty": Rule(
            "sent", "options.presence_penalty,options.frequency_penalty"
        ),
        "logit_bias": Rule("dropped", note="no token biases"),
    },
}

_WORDS: dict[Handling, str] = {"sent": "sent", "dropped": "dropped, named in the header", "400": "400"}


def markdown_table(provider: str) -> str:
    """The docs/providers.md table of ``provider``'s rules."""
    lines = ["| parameter | handling | sent as / why |", "|---|---|---|"]
    for name in PARAMETERS:
        rule = RULES[provider][name]
        where = ", ".join(f"`{w}`" for w in rule.where.split(",")) if rule.where else ""
        detail = "; ".join(part for part in (where, rule.note) if part)
        lines.append(f"| `{name}` | {_WORDS[rule.handling]} | {detail} |")
    return "\n".join(lines)
