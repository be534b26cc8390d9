"""Semantic cache benchmarks, each against a baseline measured in the same run.

    python bench/cache.py [--seconds 4] [--rounds 3] [--model-dir DIR] [--points 10000]

1. Exact hit end to end: the cache in front of the router on a real uvicorn (uvloop, httptools, one
   worker), loaded by wrk with one repeated request (all hits), vs a bare ASGI app returning fixed JSON.
   Also the in-process p50 of one exact hit (ASGI call to last byte, no network).
2. Semantic hit p50 in process (embed + vector search + verify + replay) vs one embedding alone.
   Needs the embedder: the runtime's (default) or fastembed on ``--model-dir``.
3. Vector lookup at N entries (384 dimensions, filtered by tenant, scope and expiry, top 3): Qdrant Edge
   vs qdrant-client's local mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from _harness import check_answers, require_wrk, uvicorn_process, write_results, wrk

BODY = (
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is the capital of France?"}]}'
)


def p50(values: Sequence[float]) -> float:
    return statistics.median(values)


# -- 1. exact hits ------------------------------------------------------------------------------------


def _median_result(results: list[Any]) -> Any:
    return sorted(results, key=lambda r: r.requests_per_s)[len(results) // 2]


def bench_exact_wrk(seconds: float, concurrency: list[int], rounds: int) -> list[dict[str, Any]]:
    """Bare and cache runs alternate ``rounds`` times (the machine's other load drifts); medians."""
    rows = []
    with contextlib.ExitStack() as stack:
        bare_server = stack.enter_context(uvicorn_process("_baselines:fixed_json"))
        cache_server = stack.enter_context(uvicorn_process("_cache_apps:exact_hit_gateway", factory=True))
        bare = bare_server + "/v1/chat/completions"
        cache = cache_server + "/v1/chat/completions"
        check_answers(bare, BODY)
        check_answers(cache, BODY)  # the miss that fills the cache
        for c in concurrency:
            bases, hits, ratios = [], [], []
            for _ in range(rounds):
                bases.append(
                    wrk(
                        "bare ASGI app, fixed JSON",
                        bare,
                        BODY,
                        concurrency=c,
                        seconds=seconds,
                        pid=bare_server.pid,
                    )
                )
                hits.append(
                    wrk("cache exact hit", cache, BODY, concurrency=c, seconds=seconds, pid=cache_server.pid)
                )
                ratios.append(hits[-1].requests_per_s / bases[-1].requests_per_s)
            rows.append(
                {
                    "concurrency": c,
                    "bare": _median_result(bases),
                    "hit": _median_result(hits),
                    "ratio": statistics.median(ratios),
                    "ratios": ratios,
                    # server CPU per request: what throughput becomes when the server has a core to itself
                    "cpu_bare_us": statistics.median(b.cpu_us_per_request or 0 for b in bases),
                    "cpu_hit_us": statistics.median(h.cpu_us_per_request or 0 for h in hits),
                }
            )
    return rows


async def _call(
    app: Any, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[float, bytes, dict[bytes, bytes]]:
    """One request through ``app`` in process: (seconds to the last byte, body, response headers)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "root_path": "",
        "query_string": b"",
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
        "state": {},
    }
    sent = False
    out: list[bytes] = []
    response_headers: dict[bytes, bytes] = {}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            response_headers.update(dict(message["headers"]))
        elif message["type"] == "http.response.body":
            out.append(message.get("body", b""))

    start = time.perf_counter()
    await app(scope, receive, send)
    return time.perf_counter() - start, b"".join(out), response_headers


async def bench_exact_in_process(rounds: int = 2000) -> dict[str, float]:
    from _baselines import fixed_json
    from _cache_apps import exact_hit_gateway

    app = exact_hit_gateway()
    await _call(app, BODY)
    times = []
    for _ in range(rounds):
        elapsed, _, headers = await _call(app, BODY)
        assert headers[b"x-aigw-cache"] == b"hit-exact"
        times.append(elapsed)
    bare = [(await _call(fixed_json, BODY))[0] for _ in range(rounds)]
    return {"hit_p50_ms": p50(times) * 1000, "bare_p50_ms": p50(bare) * 1000}


# -- 2. semantic hits -----------------------------------------------------------------------------------


class _FastEmbedDir:
    dimension = 384

    def __init__(self, model_dir: str) -> None:
        from fastembed import TextEmbedding

        self.model = TextEmbedding(
            "sentence-transformers/all-MiniLM-L6-v2", specific_model_path=model_dir, threads=1
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await asyncio.to_thread(lambda: [list(map(float, v)) for v in self.model.embed(list(texts))])


def _embedder(model_dir: str | None) -> Any:
    if model_dir:
        return _FastEmbedDir(model_dir)
    from asgi_aigw.runtime.config import RuntimeConfig
    from asgi_aigw.runtime.embedder import get_embedder

    return get_embedder(RuntimeConfig())


async def bench_semantic(model_dir: str | None, rounds: int = 60) -> dict[str, float]:
    from asgi_aigw.cache import CacheConfig, SemanticCacheMiddleware
    from asgi_aigw.config import GatewayConfig
    from asgi_aigw.router import ProviderRouter
    from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RouterConfig
    from asgi_aigw.testing import FakeProvider, StreamingASGITransport

    embedder = _embedder(model_dir)
    url = "http://fake.invalid/v1"
    config = GatewayConfig(
        router=RouterConfig(
            models=[
                ModelConfig(
                    name="gpt-4o-mini",
                    deployments=[
                        DeploymentConfig(model="gpt-4o-mini", base_url=url, api_key="sk-test-bench")
                    ],
                )
            ]
        )
    )  # type: ignore[arg-type]
    router = ProviderRouter(config.router, transports={url: StreamingASGITransport(FakeProvider())}, env={})
    with tempfile.TemporaryDirectory() as tmp:
        app = SemanticCacheMiddleware(
            router, config=CacheConfig(vector_store=f"qdrant-edge://{tmp}/v"), embedder=embedder
        )
        question = "How do I delete a branch in git?"
        await _call(
            app, orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]})
        )
        # Distinct wordings every round (embedders may keep recent vectors): the same question with
        # filler words that verification ignores.
        fillers = ["", "please", "so", "just", "really", "actually", "exactly", "also", "then", "quite"]
        variants = [f"{a} how can I delete a git branch {b}".strip() + "?" for a in fillers for b in fillers]
        hits, embeds = [], []
        for i in range(min(rounds, len(variants))):
            paraphrase = orjson.dumps(
                {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": variants[i]}]}
            )
            # no-store keeps the paraphrase from becoming an exact entry of its own
            elapsed, _, headers = await _call(app, paraphrase, [(b"cache-control", b"no-store")])
            assert headers[b"x-aigw-cache"] == b"hit-semantic", (variants[i], headers)
            hits.append(elapsed)
            start = time.perf_counter()
            await embedder.embed([f"{variants[i]} Which one?"])
            embeds.append(time.perf_counter() - start)
        await app.aclose()
    return {"semantic_hit_p50_ms": p50(hits) * 1000, "embedding_p50_ms": p50(embeds) * 1000}


# -- 3. vector stores at N entries ---------------------------------------------------------------------


def _unit(rng: random.Random, dim: int) -> list[float]:
    v = [rng.gauss(0, 1) for _ in range(dim)]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


async def bench_vector_stores(points: int, queries: int = 200, dim: int = 384) -> dict[str, float]:
    from asgi_aigw.cache.qdrant_edge import QdrantEdgeStore
    from asgi_aigw.cache.qdrant_server import QdrantServerStore
    from asgi_aigw.cache.vector import VectorEntry

    rng = random.Random(7)
    tenants, scopes = 10, 50  # 500 (tenant, scope) groups: about 20 entries in each at 10k
    entries = [
        VectorEntry(
            id=f"00000000-0000-0000-0000-{i:012d}",
            vector=_unit(rng, dim),
            tenant=f"t{i % tenants}",
            scope=f"s{(i // tenants) % scopes}",
            expires_at=time.time() + 3600,
            question=f"q{i}",
            answer='"a"',
        )
        for i in range(points)
    ]
    probes = [(_unit(rng, dim), f"t{i % tenants}", f"s{(i // tenants) % scopes}") for i in range(queries)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        stores = {
            "qdrant-edge": QdrantEdgeStore(Path(tmp) / "edge"),
            "qdrant-client local mode": QdrantServerStore(location=":memory:", collection="bench"),
        }
        for name, store in stores.items():
            if name == "qdrant-edge":
                # bulk load through the store's shard (one upsert per point would time the WAL, not lookups)
                await store.upsert(entries[0])
                qe = store._module()
                for start in range(0, points, 1000):
                    batch = [qe.Point(e.id, e.vector, e.payload()) for e in entries[start : start + 1000]]
                    store._shard.update(qe.UpdateOperation.upsert_points(batch))
            else:
                await store.upsert(entries[0])
                models = store._models()
                for start in range(0, points, 1000):
                    batch = [
                        models.PointStruct(id=e.id, vector=e.vector, payload=e.payload())
                        for e in entries[start : start + 1000]
                    ]
                    await store.client.upsert(store.collection, points=batch)
            times = []
            for vector, tenant, scope in probes:
                t0 = time.perf_counter()
                found = await store.search(vector, tenant=tenant, scope=scope, limit=3, now=time.time())
                times.append(time.perf_counter() - t0)
                assert found, name
            results[name] = p50(times) * 1000
            await store.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare/cache runs per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--model-dir", help="all-MiniLM-L6-v2 directory for fastembed (default: the runtime's embedder)"
    )
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--skip", nargs="*", default=[], choices=["wrk", "semantic", "vectors"])
    args = parser.parse_args()

    lines = []
    data: dict[str, Any] = {}
    if "wrk" not in args.skip:
        require_wrk()
        rows = bench_exact_wrk(args.seconds, args.concurrency, args.rounds)
        data["exact_wrk"] = rows
        lines += [
            "## Exact hit vs bare ASGI app (uvicorn + wrk)",
            "",
            "| connections | bare fixed JSON req/s | cache hit req/s | ratio (median of rounds) | ratios | bare p50 ms | hit p50 ms | server CPU µs/req bare / hit | CPU ratio |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['concurrency']} | {r['bare'].requests_per_s:,.0f} | {r['hit'].requests_per_s:,.0f} | "
                f"{r['ratio']:.0%} | {', '.join(f'{x:.0%}' for x in r['ratios'])} | {r['bare'].p50_ms:.2f} | {r['hit'].p50_ms:.2f} | "
                f"{r['cpu_bare_us']:.0f} / {r['cpu_hit_us']:.0f} | {r['cpu_bare_us'] / max(r['cpu_hit_us'], 1e-9):.0%} |"
            )
        lines.append("")
    inproc = asyncio.run(bench_exact_in_process())
    data["exact_in_process"] = inproc
    lines += [
        "## Exact hit in process (ASGI call to last byte)",
        "",
        f"cache exact hit p50 {inproc['hit_p50_ms']:.3f} ms; bare fixed-JSON app p50 {inproc['bare_p50_ms']:.3f} ms",
        "",
    ]
    if "semantic" not in args.skip:
        sem = asyncio.run(bench_semantic(args.model_dir))
        data["semantic"] = sem
        lines += [
            "## Semantic hit in process (Qdrant Edge, all-MiniLM-L6-v2)",
            "",
            f"semantic hit p50 {sem['semantic_hit_p50_ms']:.2f} ms; one embedding p50 {sem['embedding_p50_ms']:.2f} ms",
            "",
        ]
    if "vectors" not in args.skip:
        vec = asyncio.run(bench_vector_stores(args.points))
        data["vectors"] = vec
        lines += (
            [
                f"## Filtered top-3 lookup at {args.points:,} entries (384 dims)",
                "",
                "| store | p50 ms |",
                "|---|---|",
            ]
            + [f"| {k} | {v:.3f} |" for k, v in vec.items()]
            + [""]
        )
    write_results("cache", "Semantic cache benchmarks", "\n".join(lines), data)


if __name__ == "__main__":
    main()
