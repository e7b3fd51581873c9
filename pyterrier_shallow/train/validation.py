"""Validation while training: rerank a first stage's candidates for held-out queries and measure nDCG@10."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import ir_measures
import numpy as np
import pandas as pd
import pyterrier as pt

from .._frames import require_columns, require_str_ids, require_texts
from ..anchor import Anchor, first_stage_scores
from .negatives import positives_by_query


def first_stage_candidates(
    first_stage: pt.Transformer,
    topics: pd.DataFrame,
    docs: Mapping[str, str],
    *,
    depth: int,
) -> pd.DataFrame:
    """Runs ``first_stage`` on ``topics``, keeps its top ``depth`` per query and attaches ``text`` from ``docs``.

    Returns:
        A result frame (``qid, query, docno, score, rank, text``); candidates missing from ``docs`` are dropped.
    """
    require_columns(topics, ["qid", "query"], who="topics")
    require_str_ids(topics, ["qid"], who="topics")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    results = first_stage.transform(topics[["qid", "query"]])
    require_columns(results, ["qid", "docno", "rank"], who="first stage output")
    results = results[results["rank"] < depth].astype({"qid": str, "docno": str})
    if "query" not in results.columns:
        results = results.merge(topics[["qid", "query"]], on="qid")
    results = results[results["docno"].isin(docs.keys())].copy()
    results["text"] = results["docno"].map(docs)
    return results.reset_index(drop=True)


class RerankValidation:
    """Held-out queries, their candidates and qrels: measures a scorer's reranking of the candidates.

    Only queries with at least one relevant judgement and at least one candidate are measured.

    Args:
        candidates: ``qid, query, docno, text`` (and, to measure the first stage itself, ``score``).
        qrels: ``qid, docno, label``.
        metric: An ``ir_measures`` measure name.
        name: A name for the training card.
        depth: How many first-stage candidates per query were kept (for the training card).
    """

    def __init__(
        self,
        candidates: pd.DataFrame,
        qrels: pd.DataFrame,
        *,
        metric: str = "nDCG@10",
        name: str = "validation",
        depth: int | None = None,
    ):
        require_columns(candidates, ["qid", "query", "docno", "text"], who="validation candidates")
        require_str_ids(candidates, who="validation candidates")
        require_columns(qrels, ["qid", "docno", "label"], who="validation qrels")
        require_str_ids(qrels, who="validation qrels")
        require_texts(candidates, "text", who="validation candidates", allow_empty=True)
        if candidates.duplicated(["qid", "docno"]).any():
            raise ValueError("validation candidates have duplicate (qid, docno) rows")
        judged = set(positives_by_query(qrels, min_label=1))
        self.candidates = candidates[candidates["qid"].isin(judged)].reset_index(drop=True)
        if len(self.candidates) == 0:
            raise ValueError(f"{name}: no query has both a relevant judgement and a candidate")
        self._qrels = qrels[qrels["qid"].isin(set(self.candidates["qid"]))].rename(
            columns={"qid": "query_id", "docno": "doc_id", "label": "relevance"}
        )[["query_id", "doc_id", "relevance"]].astype({"relevance": int})
        self._measure = ir_measures.parse_measure(metric)
        self.metric = metric
        self.name = name
        self.depth = depth

    @classmethod
    def from_first_stage(
        cls,
        first_stage: pt.Transformer,
        topics: pd.DataFrame,
        qrels: pd.DataFrame,
        docs: Mapping[str, str],
        *,
        depth: int = 20,
        metric: str = "nDCG@10",
        name: str = "validation",
    ) -> RerankValidation:
        """Builds the validation from a first stage's top ``depth`` candidates (see :func:`first_stage_candidates`)."""
        candidates = first_stage_candidates(first_stage, topics, docs, depth=depth)
        return cls(candidates, qrels, metric=metric, name=name, depth=depth)

    @property
    def num_queries(self) -> int:
        """The number of measured queries."""
        return int(self.candidates["qid"].nunique())

    def measure(self, scores: Sequence[float] | np.ndarray) -> float:
        """Returns the metric of the candidates ranked by ``scores`` (one per candidate row)."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (len(self.candidates),):
            raise ValueError(f"expected {len(self.candidates)} scores, got shape {scores.shape}")
        run = pd.DataFrame({"query_id": self.candidates["qid"], "doc_id": self.candidates["docno"], "score": scores})
        return float(ir_measures.calc_aggregate([self._measure], self._qrels, run)[self._measure])

    def evaluate(self, score_pairs: Callable[[list[str], list[str]], np.ndarray], *,
                 anchor: Anchor | None = None) -> float:
        """Scores every (query, text) candidate with ``score_pairs`` and returns the metric of that ranking.

        With an ``anchor`` the scores are first mixed with the candidates' first-stage ``score``, per query.
        """
        scores = score_pairs(self.candidates["query"].tolist(), self.candidates["text"].tolist())
        if anchor is not None:
            first_stage = first_stage_scores(self.candidates, who=f"validation {self.name!r}")
            scores = anchor.combine(self.candidates["qid"].to_numpy(), first_stage, scores)
        return self.measure(scores)

    def first_stage_score(self) -> float | None:
        """Returns the metric of the candidates' own ``score`` order, or ``None`` without a ``score`` column."""
        if "score" not in self.candidates.columns:
            return None
        return self.measure(self.candidates["score"].to_numpy())

    def describe(self) -> dict:
        """Says what is validated on, for the training card."""
        return {
            "name": self.name,
            "metric": self.metric,
            "queries": self.num_queries,
            "candidates": len(self.candidates),
            "depth": self.depth,
            "first_stage": self.first_stage_score(),
        }
