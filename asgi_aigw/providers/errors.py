"""Map a provider's error status to the gateway's OpenAI-shaped error (shared by every adapter)."""

from __future__ import annotations

from ..kernel.errors import GatewayError, UpstreamError, UpstreamTimeout, UpstreamUnavailable

#: Statuses worth another attempt (on this deployment after a pause, or on the next one).
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


def error_from_status(
    provider: str,
    status: int,
    message: str | None,
    *,
    headers: dict[str, str] | None = None,
    err_type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> GatewayError:
    """Upstream 4xx pass through with their own status and message; 5xx become 502 (503/504 kept)."""
    detail = (message or "").strip() or f"HTTP {status} with no error message"
    passthrough_headers: list[tuple[str, str]] = []
    if headers and (retry_after := headers.get("retry-after")):
        passthrough_headers.append(("retry-after", retry_after))
    if 400 <= status < 500:
        return GatewayError(
            f"{provider} rejected the request ({status}): {detail}",
            status=status,
            type=err_type or ("rate_limit_error" if status == 429 else "invalid_request_error"),
            code=code or ("rate_limit_exceeded" if status == 429 else "upstream_client_error"),
            param=param,
            headers=passthrough_headers,
        )
    text = f"{provider} answered {status}: {detail}"
    if status == 503 or status == 529:
        return UpstreamUnavailable(text, headers=passthrough_headers)
    if status == 504:
        return UpstreamTimeout(text)
    return UpstreamError(text)
