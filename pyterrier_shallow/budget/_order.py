"""Putting a reranked head above the unreranked tail, which keeps its first-stage order."""

from __future__ import annotations

import numpy as np
import pandas as pd


def first_stage_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Returns ``frame`` sorted query by query (queries in order of first appearance) into first-stage order.

    The first-stage order is that of ``rank`` when present, else of ``score`` (highest first), else the row order.
    The index is reset; ties keep their row order.
    """
    out = frame.reset_index(drop=True)
    query_order = pd.factorize(out["qid"])[0]
    if "rank" in out.columns:
        within = out["rank"].to_numpy(dtype=np.float64)
    elif "score" in out.columns:
        within = -out["score"].to_numpy(dtype=np.float64)
    else:
        within = np.arange(len(out), dtype=np.float64)
    order = np.lexsort((np.arange(len(out)), within, query_order))
    return out.iloc[order].reset_index(drop=True)


def positions(frame: pd.DataFrame) -> np.ndarray:
    """Returns each row's 0-based position within its query (``frame`` in first-stage order)."""
    return frame.groupby("qid", sort=False).cumcount().to_numpy()


def merge_reranked(frame: pd.DataFrame, head: np.ndarray, head_scores: np.ndarray) -> pd.DataFrame:
    """Ranks each query's head by its new scores, above its tail, which keeps the first-stage order.

    Args:
        frame: Result rows in first-stage order (see :func:`first_stage_order`).
        head: Per row, whether it was reranked; within a query the head must be a prefix of the first-stage order.
        head_scores: Per row, the reranker's score (read only where ``head`` is true).

    Returns:
        A copy of ``frame``, sorted by the new ranking, with float32 ``score`` (strictly decreasing down the tail,
        every tail score below every head score of its query) and a fresh 0-based ``rank``.
    """
    out = frame.copy()
    head = np.asarray(head, dtype=bool)
    scores = np.asarray(head_scores, dtype=np.float64).copy()
    position = positions(out)
    head_count = pd.Series(head).groupby(out["qid"].to_numpy(), sort=False).transform("sum").to_numpy()
    head_min = (
        pd.Series(np.where(head, scores, np.inf)).groupby(out["qid"].to_numpy(), sort=False).transform("min").to_numpy()
    )
    floor = np.where(head_count > 0, head_min, 0.0)
    tail_scores = floor - 1.0 - (position - head_count)
    scores = np.where(head, scores, tail_scores).astype(np.float32)
    query_order = pd.factorize(out["qid"])[0]
    tier = np.where(head, 0, 1)
    within = np.where(head, -scores.astype(np.float64), position)
    order = np.lexsort((position, within, tier, query_order))
    out["score"] = scores
    out = out.iloc[order].reset_index(drop=True)
    out["rank"] = positions(out).astype(np.int64)
    return out
