"""Build the vector index (HNSW) of a Qdrant Edge shard, in a process of its own.

Qdrant Edge has no background optimizer: its points stay in a plain segment, and every search scans
the whole partition (about 40 ns a point at 128 dimensions: 2.5 ms at 54,000). ``EdgeShard.optimize()``
builds the index, but holds the GIL while it does (6 s for 60,000 points): in the serving process the
event loop would stand still. So :class:`~asgi_aigw.cache.qdrant_edge.QdrantEdgeStore` copies its shard,
this program indexes the copy, and the store swaps it in.

    python edge_indexer.py SHARD_DIR VECTOR_SIZE SEARCH_THREADS

It imports nothing of the package (it runs as a plain script: the package takes half a second to
import), so the store and this program share :func:`shard_config` by importing this module.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

#: Graph links per point and the candidates weighed while linking one: Qdrant's defaults.
HNSW_M = 16
HNSW_EF_CONSTRUCT = 100
#: A partition (tenant and scope) of fewer vectors' worth of KB than this is scanned through its payload
#: index rather than walked in the graph (Qdrant's default, 10,000 KB, scans 20,000 vectors of 128
#: dimensions: 0.8 ms a search).
FULL_SCAN_KB = 1_000
#: Segments of this many KB or more get an index when optimized: all of them (Qdrant's default waits
#: for 20,000 KB).
INDEXING_THRESHOLD_KB = 1


def shard_config(qe: Any, size: int, search_threads: int) -> Any:
    """The configuration the store creates and loads its shards with, and this program indexes them with."""
    return qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=size, distance=qe.Distance.Cosine),
        max_search_threads=search_threads,
        hnsw_config=qe.HnswIndexConfig(
            m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=FULL_SCAN_KB
        ),
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=INDEXING_THRESHOLD_KB),
    )


def index(path: Path, size: int, search_threads: int) -> None:
    """Load the shard at ``path``, index every segment, and save it."""
    import qdrant_edge as qe

    shard = qe.EdgeShard.load(str(path), shard_config(qe, size, search_threads))
    try:
        shard.optimize()
        shard.flush()
    finally:
        shard.close()


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    # behind the serving process it was started by, which shares the machine's cores with it
    os.nice(10)
    index(Path(argv[1]), int(argv[2]), int(argv[3]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
