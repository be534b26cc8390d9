"""Token log probabilities: what the client asked for, and the providers' native results as OpenAI's
``choices[].logprobs`` (``{"content": [{"token", "logprob", "bytes", "top_logprobs"}], "refusal": null}``).

Gemini's ``logprobsResult`` (ai.google.dev, ``Candidate.logprobsResult``): ``chosenCandidates[]``
``{token, tokenId, logProbability}`` and ``topCandidates[] {candidates[]}``, one entry per decoding
step; as proto3 JSON, a ``logProbability`` of 0 is left out. Ollama's ``logprobs`` (``api/types.go``,
``Logprob``) are OpenAI's entries already, but ``bytes`` and ``top_logprobs`` are left out when empty.
"""

from __future__ import annotations

from typing import Any

from ..kernel.errors import InvalidRequest
from ..kernel.models import ChatCompletionRequest


def requested(request: ChatCompletionRequest) -> tuple[bool, int | None]:
    """``(logprobs, top_logprobs)`` as asked; ``top_logprobs`` without ``logprobs: true`` is a 400, as
    at OpenAI (Gemini refuses ``logprobs`` without ``responseLogprobs`` too)."""
    top = request.top_logprobs
    if request.logprobs is not True:
        if top:
            raise InvalidRequest(
                "top_logprobs needs logprobs: true; send both to get token log probabilities.",
                param="top_logprobs",
            )
        return False, None
    return True, top


def choice_logprobs(content: list[dict[str, Any]]) -> dict[str, Any]:
    """A choice's ``logprobs`` object for ``content`` entries."""
    return {"content": content, "refusal": None}


def _entry(token: Any, logprob: Any, raw: Any = None) -> dict[str, Any]:
    text = token if isinstance(token, str) else ""
    value = float(logprob) if isinstance(logprob, int | float) else 0.0
    encoded = raw if isinstance(raw, list) else list(text.encode())
    return {"token": text, "logprob": value, "bytes": encoded}


def from_gemini(result: Any) -> list[dict[str, Any]]:
    """OpenAI content entries for a Gemini ``logprobsResult`` (empty when it is none)."""
    if not isinstance(result, dict):
        return []
    chosen = result.get("chosenCandidates")
    tops = result.get("topCandidates")
    tops = tops if isinstance(tops, list) else []
    content: list[dict[str, Any]] = []
    for step, candidate in enumerate(chosen if isinstance(chosen, list) else ()):
        if not isinstance(candidate, dict):
            continue
        entry = _entry(candidate.get("token"), candidate.get("logProbability"))
        top = tops[step] if step < len(tops) and isinstance(tops[step], dict) else {}
        alternatives = top.get("candidates")
        entry["top_logprobs"] = [
            _entry(alt.get("token"), alt.get("logProbability"))
            for alt in (alternatives if isinstance(alternatives, list) else ())
            if isinstance(alt, dict)
        ]
        content.append(entry)
    return content


def from_ollama(entries: Any) -> list[dict[str, Any]]:
    """OpenAI content entries for Ollama's ``logprobs`` list (empty when it is none)."""
    content: list[dict[str, Any]] = []
    for item in entries if isinstance(entries, list) else ():
        if not isinstance(item, dict):
            continue
        entry = _entry(item.get("token"), item.get("logprob"), item.get("bytes"))
        alternatives = item.get("top_logprobs")
        entry["top_logprobs"] = [
            _entry(alt.get("token"), alt.get("logprob"), alt.get("bytes"))
            for alt in (alternatives if isinstance(alternatives, list) else ())
            if isinstance(alt, dict)
        ]
        content.append(entry)
    return content
