"""Chooses the anchor of a cross-encoder that reranks after the anchored poly-encoder, leaving one collection out.

The cascade: BM25's top 100, reranked by the shipped poly-encoder under its own anchor; then its top ``k`` reranked
by a cross-encoder whose score is ``z(poly-encoder's anchored score) + w * z(cross-encoder)`` over those ``k`` (the
rest keep the poly-encoder's order). It reads what ``benchmarks/anchor_components.py`` wrote and scores nothing anew::

    python benchmarks/cascade_selection.py --work runs/anchor --model pre384 --out docs/cascade_selection.json

The rule, fixed before any held-out collection is scored: ``w`` is the weight with the best mean nDCG@10 over the
training collections and over the depths ``k`` a budget may stop at (10, 20, 50 and 100); the leave-one-collection-out
figure chooses ``w`` on the other two and measures the one left out. The cascade is kept only when its left-out mean
is above the poly-encoder's alone (``w = 0``). Then the held-out collections are scored, once, at every depth.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from _machine import describe_machine
from anchor_selection import HELD_OUT, MODEL_WEIGHTS, TRAINING, left_out_choices, load, ndcg

from pyterrier_shallow.anchor import Anchor
from pyterrier_shallow.poly.poly_encoder import DEFAULT_POLY_ENCODER_DIR

DEPTHS = [10, 20, 50, 100]


def with_poly_order(frame: pd.DataFrame, poly_anchor: Anchor) -> pd.DataFrame:
    """The candidates with the anchored poly-encoder's score (``polyA``) and their rank under it (``poly_rank``)."""
    qids = frame["qid"].to_numpy()
    frame = frame.assign(polyA=poly_anchor.combine(qids, frame["bm25"].to_numpy(), frame["poly"].to_numpy()))
    frame = frame.sort_values(["qid", "polyA"], ascending=[True, False], kind="stable").reset_index(drop=True)
    return frame.assign(poly_rank=frame.groupby("qid").cumcount())


def cascade_scores(frame: pd.DataFrame, model: str, depth: int, weight: float) -> np.ndarray:
    """Scores ranking the cascade's output: the top ``depth`` by the anchored mix, the rest below in poly order."""
    rank = frame["poly_rank"].to_numpy()
    top = rank < depth
    scores = -1000.0 - rank.astype(float)
    mixed = Anchor(1.0, weight).combine(frame["qid"].to_numpy()[top], frame["polyA"].to_numpy()[top],
                                        frame[model].to_numpy()[top])
    scores[top] = mixed - 1e-6 * rank[top]  # the poly-encoder's order breaks ties
    return scores


def evaluate(data: tuple[pd.DataFrame, pd.DataFrame], model: str, depth: int, weight: float) -> float:
    frame, qrels = data
    return ndcg(frame.assign(z_cascade=cascade_scores(frame, model, depth, weight)), qrels, {"cascade": 1.0})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/anchor"))
    parser.add_argument("--model", default="pre384", help="the cross-encoder's component name in --work")
    parser.add_argument("--training", nargs="+", default=TRAINING)
    parser.add_argument("--held-out", nargs="*", default=HELD_OUT)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    poly_anchor = Anchor.load(DEFAULT_POLY_ENCODER_DIR)
    data = {}
    for name in args.training + args.held_out:
        frame, qrels = load(args.work / name, ["poly", "cos", args.model], "bm25")
        data[name] = (with_poly_order(frame, poly_anchor), qrels)
    grid = MODEL_WEIGHTS
    # table[weight, collection, depth]
    table = np.array([[[evaluate(data[name], args.model, depth, weight) for depth in DEPTHS]
                       for name in args.training] for weight in grid])
    per_weight = table.mean(axis=2)  # mean over depths
    left_out = {name: {"weight": grid[best], "nDCG@10": round(float(per_weight[best, index]), 4)}
                for index, (name, best) in enumerate(zip(args.training, left_out_choices(per_weight), strict=True))}
    left_out_mean = float(np.mean([row["nDCG@10"] for row in left_out.values()]))
    poly_alone = float(per_weight[grid.index(0.0)].mean())
    chosen = grid[int(np.argmax(per_weight.mean(axis=1)))]
    report = {
        "machine": describe_machine(),
        "model": args.model,
        "poly_anchor": poly_anchor.to_dict(),
        "depths": DEPTHS,
        "training": {
            "by_weight": {f"{weight:g}": {name: [round(float(v), 4) for v in table[i, j]]
                                          for j, name in enumerate(args.training)} for i, weight in enumerate(grid)},
            "leave_one_out": left_out,
            "leave_one_out_mean": round(left_out_mean, 4),
            "poly_alone_mean": round(poly_alone, 4),
            "chosen_weight": chosen,
            "kept": left_out_mean > poly_alone,
        },
    }
    if left_out_mean > poly_alone:
        report["held_out"] = {}
        for name in args.held_out:
            frame, qrels = data[name]
            report["held_out"][name] = {
                "bm25": round(ndcg(frame, qrels, {"bm25": 1.0}), 4),
                "hybrid 1:3": round(ndcg(frame, qrels, {"bm25": 1.0, "cos": 3.0}), 4),
                "poly anchored": round(evaluate(data[name], args.model, 1, 0.0), 4),
                "cascade": {str(depth): round(evaluate(data[name], args.model, depth, chosen), 4)
                            for depth in DEPTHS},
            }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
