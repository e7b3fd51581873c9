"""Per-query latency of a retrieval pipeline, first stage and reranking timed apart, queries run one at a time."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyterrier as pt

from pyterrier_shallow._frames import require_columns, require_str_ids

STAGES = ("first_stage_ms", "rerank_ms", "total_ms")
"""The timed columns of :attr:`LatencyReport.per_query`."""


@dataclass
class LatencyReport:
    """Per-query timings of a pipeline.

    Attributes:
        per_query: One row per timed query: ``qid``, ``first_stage_ms``, ``rerank_ms`` (0 without a reranker),
            ``total_ms`` and ``candidates`` (rows the first stage passed on).
        warmup: How many queries ran untimed first.
    """

    per_query: pd.DataFrame
    warmup: int

    def summary(self) -> pd.DataFrame:
        """Returns mean, p50 and p95 (milliseconds) of each stage, one row per stage, with the query count."""
        rows = []
        for stage in STAGES:
            values = self.per_query[stage].to_numpy(dtype=np.float64)
            rows.append({"stage": stage.removesuffix("_ms"), **latency_stats(values), "queries": len(values)})
        return pd.DataFrame(rows)

    @property
    def mean_ms(self) -> float:
        """The mean end-to-end latency of a query."""
        return float(self.per_query["total_ms"].mean())


def latency_stats(values_ms: np.ndarray) -> dict[str, float]:
    """Returns ``mean_ms``, ``p50_ms`` and ``p95_ms`` of per-query latencies (``nan`` for none)."""
    values_ms = np.asarray(values_ms, dtype=np.float64)
    if len(values_ms) == 0:
        return {"mean_ms": float("nan"), "p50_ms": float("nan"), "p95_ms": float("nan")}
    return {
        "mean_ms": float(values_ms.mean()),
        "p50_ms": float(np.percentile(values_ms, 50)),
        "p95_ms": float(np.percentile(values_ms, 95)),
    }


def measure_latency(
    first_stage: pt.Transformer,
    topics: pd.DataFrame,
    *,
    reranker: pt.Transformer | None = None,
    warmup: int = 2,
    max_queries: int | None = None,
    verbose: bool = False,
) -> LatencyReport:
    """Times a pipeline query by query, as a search service runs it: the first stage, then the reranking stage.

    Each query is sent alone (a one-row topics frame), the first stage's output is handed to ``reranker``, and both
    calls are timed with a monotonic clock. The first ``warmup`` queries run once untimed before any timing starts
    (they load models and fill caches), and are timed again with the rest.

    Example::

        report = measure_latency(bm25, topics, reranker=pt.RankCutoff(100) >> TextLoader(dataset) >> CrossEncoder())
        report.summary()  # mean, p50 and p95 of first stage, reranking and the total

    Args:
        first_stage: The retriever (``qid``, ``query`` in; a result frame out). Any transformer, a whole pipeline
            included, when ``reranker`` is ``None``.
        topics: The queries (``qid``, ``query``).
        reranker: What runs on the first stage's results (cut-off, text loading and scoring together count as
            reranking), or ``None``.
        warmup: How many queries run untimed first.
        max_queries: Time only the first this many queries.
        verbose: Show a progress bar over queries.

    Returns:
        The :class:`LatencyReport`.
    """
    require_columns(topics, ["qid", "query"], who="measure_latency")
    if len(topics) == 0:
        raise ValueError("measure_latency: the topics frame is empty")
    require_str_ids(topics, ["qid"], who="measure_latency")
    if topics["qid"].duplicated().any():
        raise ValueError("measure_latency: the topics frame has duplicate qids")
    if warmup < 0:
        raise ValueError(f"warmup must be at least 0, got {warmup}")
    if max_queries is not None:
        if max_queries < 1:
            raise ValueError(f"max_queries must be at least 1, got {max_queries}")
        topics = topics.head(max_queries)
    queries = [topics.iloc[[row]].reset_index(drop=True) for row in range(len(topics))]
    for query in queries[:warmup]:
        _run_once(first_stage, reranker, query)
    rows = []
    for query in pt.tqdm(queries, desc="measure_latency", unit="query", disable=not verbose):
        first_ms, rerank_ms, candidates = _run_once(first_stage, reranker, query)
        rows.append(
            {
                "qid": query["qid"].iloc[0],
                "first_stage_ms": first_ms,
                "rerank_ms": rerank_ms,
                "total_ms": first_ms + rerank_ms,
                "candidates": candidates,
            }
        )
    return LatencyReport(per_query=pd.DataFrame(rows), warmup=min(warmup, len(queries)))


def _run_once(first_stage: pt.Transformer, reranker: pt.Transformer | None, query: pd.DataFrame):
    start = time.perf_counter()
    results = first_stage(query)
    middle = time.perf_counter()
    if reranker is None:
        return (middle - start) * 1e3, 0.0, len(results)
    reranker(results)
    return (middle - start) * 1e3, (time.perf_counter() - middle) * 1e3, len(results)
