"""Qdrant Edge's search as the semantic cache grows: scanned, then through the index the store builds.

    python bench/vector_index.py [--points 20000] [--searches 300] [--dimension 128]

One :class:`~asgi_aigw.cache.qdrant_edge.QdrantEdgeStore` on a temporary directory, one tenant and scope,
``--points`` clustered unit vectors (500 centres plus noise: closer to real embeddings than uniform
ones) written through ``upsert`` as the cache writes them, each with a 700-byte answer. The same
``--searches`` queries run three times: before any index (every point scanned), after the store's
index build has been swapped in (:mod:`asgi_aigw.cache.edge_indexer`, in a process of its own), and
once more warm; the reference is an exact numpy scan of the same vectors, from which recall@3 is taken.
Figures: CPU per search of this process (every thread: the search runs on the event loop, or its
worker thread past ``INLINE_POINTS``), and the build's wall time (its CPU is the indexer's process).
Writes bench/results/vector_index.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import write_results

from asgi_aigw.cache import qdrant_edge
from asgi_aigw.cache.qdrant_edge import QdrantEdgeStore
from asgi_aigw.cache.vector import VectorEntry, point_id

ANSWER = '"' + "a" * 700 + '"'


def clustered(rng: np.random.Generator, count: int, centres: np.ndarray) -> np.ndarray:
    points = centres[rng.integers(0, len(centres), count)] + 0.6 * rng.standard_normal(
        (count, centres.shape[1])
    )
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


async def searches(store: QdrantEdgeStore, queries: np.ndarray) -> tuple[float, list[list[str]]]:
    """CPU µs per search, and the questions found (three per query)."""
    start = time.process_time()
    found = []
    for query in queries:
        matches = await store.search(query.tolist(), tenant="t", scope="s", limit=3, now=time.time())
        found.append([m.question for m in matches])
    return (time.process_time() - start) / len(queries) * 1e6, found


def recall(found: list[list[str]], exact: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)]))


async def measure(args: argparse.Namespace, path: Path) -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((500, args.dimension))
    vectors = clustered(rng, args.points, centres)
    queries = clustered(rng, args.searches, centres)
    exact = [[f"q{i}" for i in np.argsort(-(vectors @ q))[:3]] for q in queries]
    # no build while the points are written: the scan is measured first, then one build of them all
    qdrant_edge.INDEX_AFTER = args.points + 1
    store = QdrantEdgeStore(path)
    written = time.perf_counter()
    for i, vector in enumerate(vectors):
        entry = VectorEntry(point_id(str(i)), vector.tolist(), "t", "s", time.time() + 3600, f"q{i}", ANSWER)
        await store.upsert(entry)
    written = time.perf_counter() - written
    rows: list[dict[str, Any]] = []
    cpu, found = await searches(store, queries)
    rows.append({"state": "scanned (no index)", "cpu_us": cpu, "recall_at_3": recall(found, exact)})
    qdrant_edge.INDEX_AFTER = 1
    started = time.perf_counter()
    store._maybe_index()
    build = store._build
    assert build is not None
    await build
    built = time.perf_counter() - started
    if store.builds != 1:
        raise RuntimeError("the index build did not complete (see the log)")
    for state in ("indexed, first searches", "indexed, warm"):
        cpu, found = await searches(store, queries)
        rows.append({"state": state, "cpu_us": cpu, "recall_at_3": recall(found, exact)})
    await store.aclose()
    for row in rows:
        row.update(points=args.points, build_seconds=built, write_seconds=written)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--dimension", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        rows = asyncio.run(measure(args, Path(directory) / "vectors"))
    lines = [
        f"{args.points:,} points of {args.dimension} dimensions in one tenant and scope, "
        f"{args.searches} searches for the 3 nearest; written in {rows[0]['write_seconds']:.1f} s, "
        f"indexed in {rows[0]['build_seconds']:.1f} s (copy, build in its own process, swap).",
        "",
        "| search | CPU µs per search | recall@3 against an exact scan |",
        "|---|---:|---:|",
        *(f"| {r['state']} | {r['cpu_us']:,.0f} | {r['recall_at_3']:.3f} |" for r in rows),
    ]
    write_results(
        "vector_index",
        "bench/vector_index.py: Qdrant Edge's search as the cache grows",
        "\n".join(lines),
        rows,
    )


if __name__ == "__main__":
    main()
