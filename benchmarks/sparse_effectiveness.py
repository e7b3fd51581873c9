"""nDCG@10 of a cross-encoder with dense attention beside the same weights under the sparse pattern, held out.

Measures, on collections none of the models trained on (Vaswani, and NFCorpus test queries), BM25's top 100
reranked by: the dense model with dense attention; the dense model under the sparse pattern at inference only; and
a model fine-tuned under the pattern (``pyterrier-shallow train --window W``), under the pattern. The fair
comparison is a dense and a sparse fine-tuning run of the same steps from the same start. Run from the repository
root::

    python benchmarks/sparse_effectiveness.py --dense runs/ft-dense --sparse runs/ft-w4 --window 4 \\
        --nfcorpus-queries 100 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyterrier as pt
import torch
from _machine import describe_machine
from train_experiment import _collections

from pyterrier_shallow import CrossEncoder, TextLoader
from pyterrier_shallow.bm25 import bm25
from pyterrier_shallow.sparse import SparseCrossEncoder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense", required=True, help="a cross-encoder trained with dense attention")
    parser.add_argument("--sparse", required=True, help="a cross-encoder trained under the pattern")
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--depth", type=int, default=100, help="BM25 candidates reranked")
    parser.add_argument("--nfcorpus-queries", type=int, default=None, help="a seeded sample of NFCorpus test")
    parser.add_argument("--index-dir", type=Path, default=Path("runs/cache"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rerankers = {
        "dense model, dense attention": CrossEncoder(args.dense, warn_truncation=False),
        f"dense model, sparse w={args.window} at inference": SparseCrossEncoder(
            args.dense, window=args.window, warn_truncation=False
        ),
        f"sparse-trained model, sparse w={args.window}": SparseCrossEncoder(
            args.sparse, window=args.window, warn_truncation=False
        ),
    }
    rows = []
    for collection, (dataset, topics, qrels, index) in _collections(args.index_dir, args.nfcorpus_queries).items():
        first_stage = bm25(dataset, index) % args.depth
        loader = TextLoader(dataset)
        systems = [first_stage] + [first_stage >> loader >> reranker for reranker in rerankers.values()]
        names = ["BM25"] + [f"BM25 >> {name}" for name in rerankers]
        table = pt.Experiment(systems, topics, qrels, [pt.measures.nDCG @ 10, "mrt"], names=names)
        for _, row in table.iterrows():
            rows.append(
                {
                    "collection": collection,
                    "queries": len(topics),
                    "system": row["name"],
                    "ndcg@10": round(float(row["nDCG@10"]), 4),
                    "mrt_ms": round(float(row["mrt"]), 1),
                }
            )
            print(f"{collection:14} {row['name']:55} nDCG@10 {row['nDCG@10']:.4f}  mrt {row['mrt']:.0f} ms")
    print(f"machine: {describe_machine()}")
    if args.out is not None:
        args.out.write_text(json.dumps({"machine": describe_machine(), "argv": sys.argv, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
