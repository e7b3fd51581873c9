"""Rerank depth against latency on Vaswani, the best (model, depth) per budget, and BudgetedReranker against budgets.

Part 1 runs pyterrier_shallow.budget.sweep: BM25 (PISA) followed by each reranker at each depth k, effectiveness
from one scoring pass at the deepest k, latency measured per query (queries one at a time, after warm-up) on a
sample of the topics. The rerankers are cross-encoders cut from all-MiniLM-L6-v2 (2 and 6 layers, untrained heads:
their latency is that of real models, their effectiveness is not reported), the shipped cross-encoder when present,
and all-MiniLM-L6-v2 as a bi-encoder scorer of (query, text) pairs (a trained model, so its effectiveness is real).
Part 2 serves queries with BudgetedReranker at several budgets and reports the measured latency of its stage and
the depth it chose.

    python benchmarks/bench_budget.py --queries 30 --latency-queries 5 --max-depth 100 --plot docs/budget_sweep.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import torch
from _machine import describe_machine
from bench_cross_encoder import build_checkpoint

import pyterrier_shallow as pts
from pyterrier_shallow._hf import DEFAULT_CROSS_ENCODER_DIR
from pyterrier_shallow.bm25 import bm25
from pyterrier_shallow.budget import BudgetedReranker, SweepResult, depth_grid, measure_latency, plot_tradeoff, sweep

UNTRAINED = "(untrained head)"


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    budgets = [float(value) for value in args.budgets.split(",")]

    dataset = pts.datasets.vaswani()
    topics, qrels = dataset.get_topics(), dataset.get_qrels()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        first_stage = bm25(dataset, tmp / "bm25", num_results=args.max_depth)
        text = pts.TextLoader(dataset)
        cross_encoders = {
            f"CE 2 layers {UNTRAINED}": pts.CrossEncoder(build_checkpoint(tmp / "l2", 2), warn_truncation=False),
            f"CE 6 layers {UNTRAINED}": pts.CrossEncoder(build_checkpoint(tmp / "l6", 6), warn_truncation=False),
        }
        if (DEFAULT_CROSS_ENCODER_DIR / "config.json").is_file():
            cross_encoders["CE shipped"] = pts.CrossEncoder(warn_truncation=False)
        from pyterrier_shallow.dense import BiEncoder

        rerankers = {**cross_encoders, "MiniLM-L6 bi-encoder scorer": BiEncoder().text_scorer()}
        result = sweep(
            first_stage,
            rerankers,
            topics.head(args.queries),
            qrels,
            text_loader=text,
            depths=depth_grid(args.max_depth),
            latency_queries=args.latency_queries,
        )
        table = result.table.copy()
        table.loc[table["model"].str.contains(UNTRAINED, regex=False), result.measure] = float("nan")
        print(f"machine: {describe_machine()}; shared with other work, so timings are noisy")
        print(result.describe())
        print(markdown(table.round(4)))
        trained = table[table[result.measure].notna()]
        best = SweepResult(trained, result.measure, result.effectiveness_queries, result.latency_queries)
        print("best (model, depth) per budget, among models with real effectiveness figures:")
        print(markdown(best.budget_table(budgets).round(4)))
        if args.plot is not None:
            plot_tradeoff(
                best,
                args.plot,
                budgets_ms=budgets,
                title=f"Vaswani, {result.effectiveness_queries} queries: {result.measure} against latency",
            )
            print(f"plot: {args.plot}")

        rows = []
        served = topics.sample(min(args.budget_queries, len(topics)), random_state=1)
        for name, ce in cross_encoders.items():
            for budget in budgets:
                budgeted = BudgetedReranker(ce, budget_ms=budget)
                budgeted.calibrate(text(first_stage(served.head(1))))
                report = measure_latency(first_stage, served, reranker=text >> budgeted, warmup=2)
                stage = report.summary().set_index("stage").loc["rerank"]
                log = budgeted.log.tail(len(served))
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
                    }
                )
        print(
            f"BudgetedReranker on {len(served)} Vaswani queries (BM25 top {args.max_depth}, queries one at a time); "
            "'stage' is text loading + BudgetedReranker"
        )
        print(markdown(pd.DataFrame(rows).round(2)))


if __name__ == "__main__":
    main()
