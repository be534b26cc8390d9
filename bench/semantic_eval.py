"""Precision and recall of semantic hits on the labelled question pairs (tests/data/cache_pairs.jsonl).

    python bench/semantic_eval.py                 # the runtime's embedder (all-MiniLM-L6-v2)
    python bench/semantic_eval.py --model-dir DIR # fastembed on a local all-MiniLM-L6-v2 directory
    python bench/semantic_eval.py --scores        # no model: the cosines stored in tests/data

For each pair (a = the cached question, b = the new one) a semantic hit is ``cosine >= threshold`` and,
with verification on, ``verify(b, a).ok``. Reports cosine-only and verified figures at the default
settings for the tune split, the held-out test split and both, lists the false hits, and times
``verify()``. ``--write-scores`` stores the cosines in tests/data/cache_pairs_minilm.json (what the
unit tests read, so they need no model).
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


async def embed_all(texts: list[str], model_dir: str | None) -> list[list[float]]:
    if model_dir:
        from fastembed import TextEmbedding

        model = TextEmbedding(
            "sentence-transformers/all-MiniLM-L6-v2", specific_model_path=model_dir, threads=1
        )
        return [list(map(float, v)) for v in model.embed(texts)]
    from asgi_aigw.runtime.config import RuntimeConfig
    from asgi_aigw.runtime.embedder import get_embedder

    embedder = get_embedder(RuntimeConfig())
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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", help="a local all-MiniLM-L6-v2 directory for fastembed")
    parser.add_argument("--scores", action="store_true", help="use the stored cosines, load no model")
    parser.add_argument("--write-scores", action="store_true", help="store the cosines in tests/data")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    args = parser.parse_args()

    pairs = load_pairs()
    if args.scores:
        stored = json.loads(SCORES.read_text())["cosine"]
        for pair in pairs:
            pair["cos"] = stored[str(pair["id"])]
    else:
        vectors = asyncio.run(embed_all([p["a"] for p in pairs] + [p["b"] for p in pairs], args.model_dir))
        n = len(pairs)
        for i, pair in enumerate(pairs):
            pair["cos"] = round(sum(x * y for x, y in zip(vectors[i], vectors[n + i], strict=True)), 4)
        if args.write_scores:
            SCORES.write_text(
                json.dumps(
                    {
                        "model": "sentence-transformers/all-MiniLM-L6-v2 (int8 ONNX, fastembed, mean pooling)",
                        "cosine": {str(p["id"]): p["cos"] for p in pairs},
                    },
                    indent=0,
                )
                + "\n"
            )

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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
