"""Spend per tenant and model over the last 7 days, one line per UTC day, from the request log."""

import asyncio
from datetime import timedelta

from asgi_aigw import LogConfig, aread_usage


async def main() -> None:
    log = LogConfig(store="jsonl://requests.jsonl")  # or chdb://..., clickhouse://...: the same figures
    rows = await aread_usage(log, since=timedelta(days=7), group_by=("tenant", "model", "day"))
    for row in rows:
        print(
            f"{row.day} {row.tenant} {row.model}: {row.requests} requests, "
            f"{row.total_tokens} tokens ({row.cached_tokens} from the prompt cache), "
            f"spend {row.cost:.6f}, p95 {row.p95_ms:.0f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
