"""Precision and recall of semantic hits on the labelled question pairs (tests/data/cache_pairs.jsonl).

    python bench/semantic_eval.py                 # the runtime's default embedder (static vectors)
    python bench/semantic_eval.py --backend fastembed  # all-MiniLM-L6-v2 in process
    python bench/semantic_eval.py --model-dir DIR # fastembed on a local all-MiniLM-L6-v2 directory
    python bench/semantic_eval.py --scores        # no model: the cosines stored in tests/data
    python bench/semantic_eval.py --int8 off      # the model's float products (default: auto)

For each pair (a = the cached question, b = the new one) a semantic hit is ``cosine >= threshold`` and,
with verification on, ``verify(b, a).ok``. Reports cosine-only and verified figures at the default
settings for the tune split, the held-out test split and both, then per kind of pair (precision for each
kind of negative, recall for each kind of paraphrase), lists the false hits, and times ``verify()``
(with the questions' features kept, and with none kept).
With the model loaded it also times, as medians over the paraphrase pairs, one embedding of a question
alone, a semantic hit (embed, search Qdrant Edge, verify) and a semantic miss, and reports the ratio to
the embedding alone (issue 16: a hit costs at most 1.5x the embedding). ``--write-scores`` stores the cosines in tests/data/cache_pairs_minilm.json (what the
unit tests read, so they need no model): under ``cosine`` with the float products (``--int8 off``),
under ``cosine_int8`` with int8 products (``runtime.embedder.int8_matmul``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asgi_aigw.cache.config import DEFAULT_THRESHOLD  # noqa: E402
from asgi_aigw.cache.verify import verify  # noqa: E402

PAIRS = ROOT / "tests" / "data" / "cache_pairs.jsonl"
SCORES = ROOT / "tests" / "data" / "cache_pairs_minilm.json"


def load_pairs() -> list[dict[str, Any]]:
    return [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]


#: ``--backend``: the runtime's embedder backend (``runtime.embedder.backend``).
BACKEND = "static"


def runtime_config(int8: str) -> Any:
    from asgi_aigw.runtime.config import EmbedderSettings, RuntimeConfig

    return RuntimeConfig(embedder=EmbedderSettings(backend=BACKEND, int8_matmul=int8))


def score_key(int8: str) -> str:
    """The stored column the runtime's embedder gives with this setting."""
    from asgi_aigw.runtime.cpu import int8_products

    if BACKEND == "static":
        return "cosine_static"
    return "cosine_int8" if int8_products(int8) else "cosine"


async def embed_all(texts: list[str], model_dir: str | None, int8: str) -> list[list[float]]:
    if model_dir:
        from fastembed import TextEmbedding

        model = TextEmbedding(
            "sentence-transformers/all-MiniLM-L6-v2", specific_model_path=model_dir, threads=1
        )
        return [list(map(float, v)) for v in model.embed(texts)]
    from asgi_aigw.runtime.embedder import get_embedder

    embedder = get_embedder(runtime_config(int8))
    out: list[list[float]] = []
    for start in range(0, len(texts), 32):
        out.extend(await embedder.embed(texts[start : start + 32]))
    return out


def evaluate(pairs: list[dict[str, Any]], threshold: float, *, verified: bool) -> dict[str, Any]:
    tp = fp = fn = 0
    false_hits: list[dict[str, Any]] = []
    for pair in pairs:
        hit = pair["cos"] >= threshold and (not verified or verify(pair["b"], pair["a"]).ok)
        if hit and pair["paraphrase"]:
            tp += 1
        elif hit:
            fp += 1
            false_hits.append(pair)
        elif pair["paraphrase"]:
            fn += 1
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": precision, "recall": recall, "tp": tp, "fp": fp, "fn": fn, "false_hits": false_hits}


def per_kind(pairs: list[dict[str, Any]], threshold: float) -> list[str]:
    """One line per kind: for a negative kind its false hits and the precision they leave (against
    the paraphrases that hit in the same pairs), for a paraphrase kind its recall."""
    hits = sum(p["paraphrase"] and p["cos"] >= threshold and verify(p["b"], p["a"]).ok for p in pairs)
    lines = []
    for kind in sorted({p["kind"] for p in pairs}):
        members = [p for p in pairs if p["kind"] == kind]
        hit = sum(p["cos"] >= threshold and verify(p["b"], p["a"]).ok for p in members)
        if members[0]["paraphrase"]:
            lines.append(f"{kind:20} n={len(members):3}  recall {hit / len(members):.3f} ({hit} hits)")
        else:
            precision = hits / (hits + hit) if hits + hit else 1.0
            lines.append(f"{kind:20} n={len(members):3}  precision {precision:.3f} ({hit} false hits)")
    return lines


async def lookup_cost(
    pairs: list[dict[str, Any]], model_dir: str | None, threshold: float, int8: str
) -> None:
    """Medians of one embedding alone, a semantic hit and a semantic miss, over the paraphrase pairs,
    with the runtime's embedder and Qdrant Edge (one question at a time, as a lone request sees it)."""
    import tempfile

    from asgi_aigw.cache.vector import VectorEntry, point_id
    from asgi_aigw.stores.registry import VECTOR_STORES

    def embedder_call() -> Any:
        if model_dir:
            raise SystemExit("--model-dir: cost is measured with the runtime's embedder only")
        from asgi_aigw.runtime.embedder import get_embedder

        return get_embedder(runtime_config(int8))

    embedder = embedder_call()
    await embedder.embed(["warm-up"])
    paraphrases = [p for p in pairs if p["paraphrase"]][:120]
    negatives = [p for p in pairs if not p["paraphrase"]][:120]
    with tempfile.TemporaryDirectory() as tmp:
        store = VECTOR_STORES.open(f"qdrant-edge://{tmp}/v")
        stored = [p["a"] for p in paraphrases + negatives]
        vectors = await embed_all(stored, None, int8)
        for question, vector in zip(stored, vectors, strict=True):
            await store.upsert(
                VectorEntry(point_id(question), vector, "t", "s", time.time() + 3600, question, "{}")
            )

        async def lookup(question: str) -> bool:
            vector = (await embedder.embed([question]))[0]
            matches = await store.search(vector, tenant="t", scope="s", limit=3, now=time.time())
            return any(m.score >= threshold and verify(question, m.question).ok for m in matches)

        embed_alone: list[float] = []
        hit_costs: list[float] = []
        miss_costs: list[float] = []
        hit_ratios: list[float] = []
        miss_ratios: list[float] = []
        for pair in paraphrases + negatives:
            # trailing spaces: the same vector, but not a text the embedder's own LRU has seen
            start = time.perf_counter()
            await embedder.embed([pair["b"] + " "])
            embed_alone.append(time.perf_counter() - start)
            start = time.perf_counter()
            hit = await lookup(pair["b"] + "  ")
            cost = time.perf_counter() - start
            (hit_costs if hit else miss_costs).append(cost)
            (hit_ratios if hit else miss_ratios).append(cost / embed_alone[-1])
        await store.aclose()
    base = statistics.median(embed_alone)
    print(f"\nlookup cost (p50, Qdrant Edge with {len(stored)} entries, {len(embed_alone)} questions):")
    print(f"  one embedding alone   {base * 1e3:6.2f} ms")
    for name, costs, ratios in (
        ("semantic hit", hit_costs, hit_ratios),
        ("semantic miss", miss_costs, miss_ratios),
    ):
        if costs:
            print(
                f"  {name:21} {statistics.median(costs) * 1e3:6.2f} ms; per question "
                f"{statistics.median(ratios):.2f}x the embedding of that question (n={len(costs)})"
            )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", help="a local all-MiniLM-L6-v2 directory for fastembed")
    parser.add_argument("--scores", action="store_true", help="use the stored cosines, load no model")
    parser.add_argument("--write-scores", action="store_true", help="store the cosines in tests/data")
    parser.add_argument("--backend", choices=("static", "fastembed"), default=BACKEND)
    parser.add_argument("--threshold", type=float, help="default: the embedder's own (0.80; static 0.70)")
    parser.add_argument(
        "--int8", choices=("auto", "on", "off"), default="auto", help="runtime.embedder.int8_matmul"
    )
    args = parser.parse_args()
    globals()["BACKEND"] = args.backend
    if args.threshold is None:
        args.threshold = 0.70 if args.backend == "static" and not args.model_dir else DEFAULT_THRESHOLD

    pairs = load_pairs()
    key = "cosine" if args.model_dir else score_key(args.int8)
    print(f"cosines: {key}")
    if args.scores:
        stored = json.loads(SCORES.read_text())[key]
        for pair in pairs:
            pair["cos"] = stored[str(pair["id"])]
    else:
        texts = [p["a"] for p in pairs] + [p["b"] for p in pairs]
        vectors = asyncio.run(embed_all(texts, args.model_dir, args.int8))
        n = len(pairs)
        for i, pair in enumerate(pairs):
            pair["cos"] = round(sum(x * y for x, y in zip(vectors[i], vectors[n + i], strict=True)), 4)
        if args.write_scores:
            scores = json.loads(SCORES.read_text()) if SCORES.is_file() else {}
            scores["model"] = (
                "sentence-transformers/all-MiniLM-L6-v2 (int8 ONNX, mean pooling; cosine_static: its "
                "static vectors)"
            )
            scores[key] = {str(p["id"]): p["cos"] for p in pairs}
            SCORES.write_text(json.dumps(scores, indent=0) + "\n")

    negatives = [p for p in pairs if not p["paraphrase"]]
    hard = [p for p in negatives if p["kind"].startswith("hard")]
    print(
        f"pairs: {len(pairs)} ({len(pairs) - len(negatives)} paraphrases, {len(negatives)} not, "
        f"{len(hard)} hard negatives = {len(hard) / len(negatives):.0%} of the negatives)"
    )
    by_kind: dict[str, list[float]] = {}
    for pair in pairs:
        by_kind.setdefault(pair["kind"], []).append(pair["cos"])
    print("cosine by kind (median / p10 / p90 / max):")
    for kind, values in sorted(by_kind.items()):
        values.sort()
        p10 = values[int(0.1 * (len(values) - 1))]
        p90 = values[int(0.9 * (len(values) - 1))]
        print(
            f"  {kind:15} n={len(values):3}  {statistics.median(values):.3f} / {p10:.3f} / {p90:.3f} / {values[-1]:.3f}"
        )

    print(f"\nthreshold {args.threshold} (default {DEFAULT_THRESHOLD}):")
    for split in ("tune", "test", "all"):
        subset = [p for p in pairs if split == "all" or p["split"] == split]
        raw = evaluate(subset, args.threshold, verified=False)
        ver = evaluate(subset, args.threshold, verified=True)
        print(
            f"  {split:5} cosine only: P={raw['precision']:.3f} R={raw['recall']:.3f} (fp={raw['fp']})   "
            f"verified: P={ver['precision']:.3f} R={ver['recall']:.3f} (tp={ver['tp']} fp={ver['fp']} fn={ver['fn']})"
        )
    best = max(
        (evaluate(pairs, t / 100, verified=False) | {"t": t / 100} for t in range(50, 100)),
        key=lambda r: r["precision"],
    )
    print(
        f"  best cosine-only precision over thresholds 0.50-0.99: {best['precision']:.3f} at {best['t']:.2f} "
        f"(recall {best['recall']:.3f})"
    )
    print("\nper kind, verified (held-out test split / all pairs):")
    for split in ("test", "all"):
        subset = [p for p in pairs if split == "all" or p["split"] == split]
        for line in per_kind(subset, args.threshold):
            print(f"  {split:4} {line}")
    false_hits = evaluate(pairs, args.threshold, verified=True)["false_hits"]
    print(f"\nfalse hits after verification ({len(false_hits)}):")
    for pair in false_hits:
        print(f"  [{pair['split']}] {pair['kind']} {pair['cos']:.3f}: {pair['a']!r} -> {pair['b']!r}")

    start = time.perf_counter()
    rounds = 20
    for _ in range(rounds):
        for pair in pairs:
            verify(pair["b"], pair["a"])
    per_call = (time.perf_counter() - start) / (rounds * len(pairs)) * 1e6
    print(f"\nverify() cost: {per_call:.1f} µs per candidate (mean over {rounds * len(pairs)} calls)")
    # the same pairs, each round as another tenant's: no question's features are kept (a new question
    # against neighbours it has not met, as a cache of many different questions sees it)
    start = time.perf_counter()
    for round_ in range(rounds):
        tenant = f"bench-{round_}"
        for pair in pairs:
            verify(pair["b"], pair["a"], tenant=tenant)
    per_new = (time.perf_counter() - start) / (rounds * len(pairs)) * 1e6
    print(f"verify() cost, neither question's features kept: {per_new:.1f} µs per candidate")
    if not args.scores:
        asyncio.run(lookup_cost(pairs, args.model_dir, args.threshold, args.int8))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
