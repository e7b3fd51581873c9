"""Measures a reranker placed after the hybrid, leaving one training collection out at a time.

The pipeline ``bm25 % 100 >> hybrid >> reranker``, with the reranker anchored on the hybrid's score: per query,
``z(z(BM25) + c z(cosine)) + w z(model)``. It reads what ``benchmarks/anchor_components.py`` cached and scores
nothing anew; for each collection left out, the weight ``w`` best on the others is measured on it::

    cd benchmarks && python after_hybrid_selection.py --work ../runs/anchor --model pre384 --cosine-weight 4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from anchor_selection import MODEL_WEIGHTS, left_out_choices, load, ndcg

from pyterrier_shallow.anchor import per_query_zscores

TRAINING = ["nfcorpus-dev", "cranfield", "cisi", "wikiqa-test"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/anchor"))
    parser.add_argument("--model", required=True, help="the reranker's component name in --work")
    parser.add_argument("--cosine-weight", type=float, default=3.0, help="the hybrid's c (default: 3, as it ships)")
    parser.add_argument("--training", nargs="+", default=TRAINING)
    args = parser.parse_args()
    table = []
    for name in args.training:
        frame, qrels = load(args.work / name, ["cos", args.model], "bm25")
        hybrid = frame["z_bm25"].to_numpy() + args.cosine_weight * frame["z_cos"].to_numpy()
        frame["z_hybrid"] = per_query_zscores(frame["qid"].to_numpy(), hybrid)
        table.append([ndcg(frame, qrels, {"hybrid": 1.0, args.model: weight}) for weight in MODEL_WEIGHTS])
    table = np.array(table).T  # weights x collections
    left_out = []
    for index, (name, best) in enumerate(zip(args.training, left_out_choices(table), strict=True)):
        left_out.append(table[best, index])
        print(f"{name} left out: w = {MODEL_WEIGHTS[best]:g}, {table[best, index]:.4f} "
              f"(the hybrid: {table[0, index]:.4f})")
    chosen = MODEL_WEIGHTS[int(np.argmax(table.mean(axis=1)))]
    print(f"mean left out {np.mean(left_out):.4f}; the hybrid's mean {table[0].mean():.4f}; "
          f"chosen on all: w = {chosen:g}")


if __name__ == "__main__":
    main()
