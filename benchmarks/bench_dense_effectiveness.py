"""nDCG@10 of dense retrieval (all-MiniLM-L6-v2 over an exact FAISS index), BM25, and hybrid BM25 + dense fusions.

Runs pt.Experiment on Vaswani (93 queries, 11,429 documents) and NFCorpus test (323 queries from
queries.beir-test.tsv, qrels test.2-1-0.qrel, corpus test.docs). Indexes are built once under --work and reused.
Fusions take the top 100 of each retriever; their weights are fixed in advance (not tuned on these queries).

    python benchmarks/bench_dense_effectiveness.py --work /tmp/pts-dense-bench
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import pyterrier as pt
from _machine import describe_machine

import pyterrier_shallow.dense as dense
from pyterrier_shallow import datasets
from pyterrier_shallow.bm25 import bm25

MEASURES = [pt.measures.nDCG @ 10, pt.measures.R @ 100, pt.measures.RR @ 10]


def dense_index(name: str, dataset, model: dense.BiEncoder, work: Path) -> dense.FaissIndex:
    index = dense.FaissIndex(work / f"{name}.faiss")
    if not index.built():
        started = time.perf_counter()
        index.indexer(model, verbose=True).index(dataset.get_corpus_iter())
        print(f"{name}: encoded and indexed {len(index)} documents in {time.perf_counter() - started:.0f} s")
    return index


def original_text(topics: pd.DataFrame) -> pd.DataFrame:
    """The topics with their released text (``query_0``) as ``query``, where the loader made queries parser-safe."""
    if "query_0" not in topics.columns:
        return topics
    return topics.assign(query=topics["query_0"]).drop(columns=["query_0"])


def run(name: str, dataset, split: str | None, model: dense.BiEncoder, work: Path) -> pd.DataFrame:
    topics, qrels = dataset.get_topics(split), dataset.get_qrels(split)
    index = dense_index(name, dataset, model, work)
    sparse = bm25(dataset, work / f"{name}.bm25", num_results=1000)
    dense_retriever = index.retriever(model, num_results=1000)
    raw_dense = pt.apply.generic(lambda frame: dense_retriever(original_text(frame)))
    systems = {
        "BM25 (PISA, k1=0.9 b=0.4)": sparse,
        "dense, parser-safe query text": dense_retriever,
        "dense, released query text": raw_dense,
        "hybrid z-score 1:1": dense.ScoreFusion(sparse % 100, dense_retriever % 100, weights=[1, 1]),
        "hybrid z-score 1:2 (dense x2)": dense.ScoreFusion(sparse % 100, dense_retriever % 100, weights=[1, 2]),
        "hybrid RRF (k=60)": dense.ScoreFusion(sparse % 100, dense_retriever % 100, normalize="rrf"),
    }
    table = pt.Experiment(list(systems.values()), topics, qrels, MEASURES + ["mrt"], names=list(systems))
    table.insert(0, "collection", f"{name} ({len(topics)} q)")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/pts-dense-bench"))
    parser.add_argument("--collections", nargs="+", default=["vaswani", "nfcorpus"])
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = dense.BiEncoder(warn_truncation=False)
    tables = []
    for name in args.collections:
        dataset = datasets.get(name)
        split = "test" if name == "nfcorpus" else None
        tables.append(run(name, dataset, split, model, args.work))
    print(f"\nMachine: {describe_machine()}")
    print(markdown(pd.concat(tables, ignore_index=True)))


def markdown(frame: pd.DataFrame) -> str:
    """The frame as a Markdown table, floats to 3 decimals (mean response time to 1)."""
    cells = [
        [
            f"{value:.1f}" if column == "mrt" else f"{value:.3f}" if isinstance(value, float) else str(value)
            for column, value in row.items()
        ]
        for _, row in frame.iterrows()
    ]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


if __name__ == "__main__":
    main()
