"""The demo experiment: BM25 against BM25 followed by rerankers, on a collection that works offline."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyterrier as pt

from pyterrier_shallow import datasets
from pyterrier_shallow._cache import cache_dir
from pyterrier_shallow._hf import DEFAULT_CROSS_ENCODER_DIR
from pyterrier_shallow._warnings import pipelines_timed_apart
from pyterrier_shallow.anchor import HYBRID
from pyterrier_shallow.bm25 import bm25
from pyterrier_shallow.cross_encoder import CrossEncoder
from pyterrier_shallow.dense import BiEncoder
from pyterrier_shallow.text_loader import TextLoader

DEMO_DEPTH = 20
"""BM25 candidates reranked per query by default: enough for nDCG@10, and the table shows within about a minute and a
half on two CPU cores, index build included (``--depth 100`` is the full-size experiment)."""


def default_rerankers(model: str | None = None, *, verbose: bool = False) -> dict[str, pt.Transformer]:
    """Returns the demo's rerankers: the default hybrid, then the cross-encoder ``model`` (or the shipped one).

    The hybrid is BM25's score and all-MiniLM-L6-v2's cosine, each standardised over the query's candidates and
    added, the cosine weighed 3 (``BiEncoder().text_scorer(anchor=anchor.HYBRID)``): no model is trained, and held
    out it ranks above every model trained here. The shipped cross-encoder is anchored on BM25's score too.

    Args:
        model: A cross-encoder (hub id or folder); ``None`` uses the one shipped with the package, if any.
        verbose: Show progress bars.
    """
    rerankers = {"hybrid z(BM25) + 3 z(MiniLM cosine)": BiEncoder(verbose=verbose, warn_truncation=False)
                 .text_scorer(anchor=HYBRID)}
    if model is not None or (DEFAULT_CROSS_ENCODER_DIR / "config.json").is_file():
        rerankers["CrossEncoder"] = CrossEncoder(model, verbose=verbose, warn_truncation=False)
    return rerankers


def run_demo(
    *,
    dataset: str = "vaswani",
    split: str | None = None,
    rerankers: dict[str, pt.Transformer] | None = None,
    model: str | None = None,
    depth: int = DEMO_DEPTH,
    index_dir: str | os.PathLike | None = None,
    max_queries: int | None = None,
    verbose: bool = True,
) -> pd.DataFrame:
    """Runs ``pt.Experiment`` comparing BM25 with BM25 ``% depth`` followed by each reranker.

    Args:
        dataset: A collection name known to :func:`pyterrier_shallow.datasets.get` (default: the bundled Vaswani).
        split: The split whose topics and qrels are used (default: the collection's default split).
        rerankers: Named rerankers of (query, text) pairs; by default the cross-encoder ``model``.
        model: The cross-encoder for the default reranker (``None``: the one shipped with the package).
        depth: How many BM25 candidates each query's reranker sees.
        index_dir: Where the BM25 index is kept (default: a folder under :func:`cache_dir`).
        max_queries: Evaluate on the first queries only (for a quick look).
        verbose: Show progress bars.

    Returns:
        The experiment's table: nDCG@10, MAP@100, R@100 and mean response time per pipeline.
    """
    collection = datasets.get(dataset)
    split = split or collection.default_split
    topics, qrels = collection.get_topics(split), collection.get_qrels(split)
    if max_queries is not None:
        topics = topics.head(max_queries)
    index_dir = Path(index_dir) if index_dir is not None else cache_dir() / "bm25" / collection.name
    first_stage = bm25(collection, index_dir, num_results=1000, verbose=verbose)
    if rerankers is None:
        rerankers = default_rerankers(model, verbose=verbose)
    text = TextLoader(collection, verbose=verbose) if rerankers else None
    pipelines = [first_stage] + [first_stage % depth >> text >> reranker for reranker in rerankers.values()]
    names = ["BM25"] + [f"BM25 >> {name} (top {depth})" for name in rerankers]
    measures = [pt.measures.nDCG @ 10, pt.measures.AP @ 100, pt.measures.R @ 100, "mrt"]
    with pipelines_timed_apart():  # every pipeline starts with the same BM25, and each is timed whole
        return pt.Experiment(pipelines, topics, qrels, measures, names=names, round=4, verbose=verbose)
