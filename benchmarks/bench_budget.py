"""Rerank depth against latency on Vaswani, the best (model, depth) per budget, and BudgetedReranker against budgets.

Part 1 runs pyterrier_shallow.budget.sweep: BM25 (PISA) followed by each reranker at each depth k, effectiveness
from one scoring pass at the deepest k, latency measured per query (queries one at a time, after warm-up) on a
sample of the topics. The rerankers are trained models only, so every effectiveness figure is real: the
cross-encoders named with ``--cross-encoder NAME=PATH`` (and the shipped one when present), and all-MiniLM-L6-v2 as
a bi-encoder scorer of (query, text) pairs, whole and cut to the layers named by ``--bi-encoder-layers``.
Part 2 serves queries with BudgetedReranker (over each cross-encoder) at several budgets and reports the measured
latency of its stage, the depth it chose and the nDCG@10 of what it returned.

    python benchmarks/bench_budget.py --cross-encoder "CE 2 layers=runs/ctx3" --queries 93 --latency-queries 10 \
        --max-depth 100 --plot docs/budget_sweep.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import pyterrier as pt
import torch
from _machine import describe_machine

import pyterrier_shallow as pts
from pyterrier_shallow._hf import DEFAULT_CROSS_ENCODER_DIR
from pyterrier_shallow.bm25 import bm25
from pyterrier_shallow.budget import BudgetedReranker, depth_grid, measure_latency, plot_tradeoff, sweep
from pyterrier_shallow.dense import BiEncoder, save_first_layers


def markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(_cell(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, *body])


def _cell(value) -> str:
    if isinstance(value, float):
        return "–" if pd.isna(value) else f"{value:.4g}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=30, help="topics for effectiveness")
    parser.add_argument("--latency-queries", type=int, default=5, help="topics timed per (model, depth)")
    parser.add_argument("--max-depth", type=int, default=100)
    parser.add_argument("--budgets", default="25,50,100,200,400")
    parser.add_argument("--budget-queries", type=int, default=20, help="topics served by BudgetedReranker")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--cross-encoder", action="append", default=[], help="NAME=PATH of a trained cross-encoder")
    parser.add_argument("--bi-encoder-layers", default="2,6", help="all-MiniLM-L6-v2 scorers cut to these layers")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    budgets = [float(value) for value in args.budgets.split(",")]

    dataset = pts.datasets.vaswani()
    topics, qrels = dataset.get_topics(), dataset.get_qrels()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        first_stage = bm25(dataset, tmp / "bm25", num_results=args.max_depth)
        text = pts.TextLoader(dataset)
        cross_encoders = {}
        for spec in args.cross_encoder:
            name, _, path = spec.partition("=")
            cross_encoders[name] = pts.CrossEncoder(path, warn_truncation=False)
        if (DEFAULT_CROSS_ENCODER_DIR / "config.json").is_file():
            cross_encoders["CE shipped"] = pts.CrossEncoder(warn_truncation=False)
        scorers = {}
        for layers in sorted(int(value) for value in args.bi_encoder_layers.split(",") if value):
            source = None if layers == 6 else save_first_layers(tmp / f"minilm-l{layers}", layers)
            scorers[f"bi-encoder scorer, {layers} layers"] = BiEncoder(source, warn_truncation=False).text_scorer()
        rerankers = {**cross_encoders, **scorers}
        result = sweep(
            first_stage,
            rerankers,
            topics.head(args.queries),
            qrels,
            text_loader=text,
            depths=depth_grid(args.max_depth),
            latency_queries=args.latency_queries,
        )
        print(f"machine: {describe_machine()}")
        print(result.describe())
        print(markdown(result.table.round(4)))
        print("best (model, depth) per budget:")
        print(markdown(result.budget_table(budgets).round(4)))
        if args.plot is not None:
            plot_tradeoff(
                result,
                args.plot,
                budgets_ms=budgets,
                title=f"Vaswani, {result.effectiveness_queries} queries: {result.measure} against latency",
            )
            print(f"plot: {args.plot}")

        rows = []
        served = topics.sample(min(args.budget_queries, len(topics)), random_state=1)
        served_qrels = qrels[qrels["qid"].isin(set(served["qid"]))]  # pt.Evaluate counts absent queries as 0
        for name, ce in cross_encoders.items():
            for budget in budgets:
                budgeted = BudgetedReranker(ce, budget_ms=budget)
                budgeted.calibrate(text(first_stage(served.head(1))))
                report = measure_latency(first_stage, served, reranker=text >> budgeted, warmup=2)
                stage = report.summary().set_index("stage").loc["rerank"]
                log = budgeted.log.tail(len(served))
                returned = (first_stage >> text >> budgeted)(served)
                effectiveness = pt.Evaluate(returned, served_qrels, metrics=[pt.measures.nDCG @ 10])["nDCG@10"]
                rows.append(
                    {
                        "model": name,
                        "budget_ms": budget,
                        "stage mean_ms": stage["mean_ms"],
                        "stage p50_ms": stage["p50_ms"],
                        "stage p95_ms": stage["p95_ms"],
                        "BudgetedReranker mean_ms": log["total_ms"].mean(),
                        "mean depth": log["depth"].mean(),
                        "min depth": log["depth"].min(),
                        "max depth": log["depth"].max(),
                        "nDCG@10": effectiveness,
                    }
                )
        alone = pt.Evaluate(first_stage(served), served_qrels, metrics=[pt.measures.nDCG @ 10])["nDCG@10"]
        print(
            f"BudgetedReranker on {len(served)} Vaswani queries (BM25 alone: nDCG@10 {alone:.4f}; "
            f"BM25 top {args.max_depth}, queries one at a time); "
            "'stage' is text loading + BudgetedReranker"
        )
        print(markdown(pd.DataFrame(rows).round(2)))


if __name__ == "__main__":
    main()
