"""Peak memory of building an IVF-PQ FaissIndex from a stream of vectors, at two corpus sizes.

The indexer holds one chunk of documents and the compact codes, never the whole set of vectors: the peak resident
memory should grow by about the codes' size (pq_m bytes a document), not by the vectors' (4 x dimension bytes).
Each size runs in a fresh process; the vectors are random unit vectors generated chunk by chunk.

    python benchmarks/bench_faiss_memory.py --sizes 250000 1000000 --work /tmp/pts-faiss-memory
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DIMENSION = 384


def build(size: int, work: Path) -> None:
    import pyterrier_shallow.dense as dense

    def documents():
        generator = np.random.default_rng(0)
        for start in range(0, size, 4096):
            vectors = generator.normal(size=(min(4096, size - start), DIMENSION)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            for offset, vector in enumerate(vectors):
                yield {"docno": f"d{start + offset}", "doc_vec": vector}

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    index = dense.FaissIndex(work / f"ivfpq-{size}.faiss")
    index.indexer(index_type="ivfpq", train_size=50_000, overwrite=True, verbose=False).index(documents())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"| {size:,} | {size * DIMENSION * 4 / 2**20:,.0f} MiB | {peak - before:,.0f} MiB | "
          f"{time.perf_counter() - started:.0f} s |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000])
    parser.add_argument("--work", type=Path, default=Path("/tmp/pts-faiss-memory"))
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.one is not None:
        build(args.one, args.work)
        return
    print("| documents | their vectors (float32) | peak resident memory added by the build | build time |")
    print("|---:|---:|---:|---:|")
    for size in args.sizes:
        subprocess.run([sys.executable, __file__, "--one", str(size), "--work", str(args.work)], check=True)


if __name__ == "__main__":
    main()
