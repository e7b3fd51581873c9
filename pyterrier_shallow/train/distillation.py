"""Distillation data: a first stage's candidates scored by a teacher, drawn as groups with the teacher's scores."""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt

from .._frames import require_columns, require_str_ids, require_texts
from .._io import atomic_write_bytes, digest
from .data import TrainingGroup, TrainingSource
from .validation import first_stage_candidates


def score_with_teacher(
    teacher: pt.Transformer,
    candidates: pd.DataFrame,
    *,
    cache_dir: str | os.PathLike | None = None,
    key: str | None = None,
    queries_per_call: int = 32,
    verbose: bool = False,
) -> pd.DataFrame:
    """Returns ``candidates`` with a float32 ``teacher_score`` column: the teacher's ``score`` of each row.

    Args:
        teacher: Any transformer that scores a result frame (``qid, query, docno, text`` and whatever else the
            candidates carry, e.g. the first stage's ``score``) into a ``score`` column.
        candidates: The pairs to score.
        cache_dir: Caches the scores under a name derived from the teacher (``repr`` or ``key``) and the pairs.
        key: Names the teacher in the cache instead of its ``repr``.
        queries_per_call: Queries per call to the teacher.
        verbose: Show a progress bar.
    """
    require_columns(candidates, ["qid", "query", "docno", "text"], who="distillation candidates")
    require_str_ids(candidates, who="distillation candidates")
    if candidates.duplicated(["qid", "docno"]).any():
        raise ValueError("distillation candidates have duplicate (qid, docno) rows")
    cache_path = None
    if cache_dir is not None:
        teacher_key = key if key is not None else repr(teacher)
        if key is None and re.search(r" at 0x[0-9a-f]+", teacher_key):
            warnings.warn("the teacher's repr holds a memory address; pass key= so its cache is found again",
                          stacklevel=2)
        pairs_key = digest(candidates["qid"].tolist(), candidates["docno"].tolist(), candidates["query"].tolist())
        cache_path = Path(cache_dir) / f"teacher-{digest(teacher_key, pairs_key)}.pkl"
        if cache_path.exists():
            return candidates.assign(teacher_score=pd.read_pickle(cache_path).to_numpy(dtype=np.float32))
    qids = candidates["qid"].unique()
    parts = []
    for start in pt.tqdm(range(0, len(qids), queries_per_call), desc="teacher", unit="batch", disable=not verbose):
        chunk = candidates[candidates["qid"].isin(set(qids[start : start + queries_per_call]))]
        scored = teacher.transform(chunk)
        require_columns(scored, ["qid", "docno", "score"], who="teacher output")
        parts.append(scored[["qid", "docno", "score"]])
    scores = pd.concat(parts, ignore_index=True)
    merged = candidates[["qid", "docno"]].merge(scores, on=["qid", "docno"], how="left", validate="one_to_one")
    if merged["score"].isna().any() or not np.isfinite(merged["score"].to_numpy(dtype=np.float64)).all():
        raise ValueError("the teacher dropped some candidates or gave non-finite scores")
    teacher_score = merged["score"].astype(np.float32).reset_index(drop=True)
    if cache_path is not None:
        buffer = io.BytesIO()
        teacher_score.to_pickle(buffer)
        atomic_write_bytes(cache_path, buffer.getvalue())
    return candidates.assign(teacher_score=teacher_score.to_numpy())


class DistillationSource(TrainingSource):
    """Groups of k + 1 candidates of a query with their teacher scores; no relevance labels needed.

    Each group draws k + 1 of the query's candidates at random and puts the one the teacher scores highest first, so
    label-based losses (gBCE...) can use it as the positive and distillation losses (MarginMSE, soft labels) get the
    teacher's scores. N (for gBCE) is the query's number of candidates minus one.

    Args:
        scored: ``qid, query, text, teacher_score`` (see :func:`score_with_teacher`), and the first stage's score
            when there is one, as ``first_stage_score`` or ``score`` (groups then carry it, for anchored training).
        name: A name for the training card.
    """

    def __init__(self, scored: pd.DataFrame, *, name: str = "distillation"):
        require_columns(scored, ["qid", "query", "text", "teacher_score"], who=f"{name} pairs")
        if len(scored) == 0:
            raise ValueError(f"{name}: no scored candidates")
        require_str_ids(scored, ["qid"], who=f"{name} pairs")
        require_texts(scored, "text", who=f"{name} pairs", allow_empty=False)
        values = scored["teacher_score"].to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"{name}: teacher_score has missing or non-finite values")
        first_column = next((column for column in ("first_stage_score", "score") if column in scored.columns), None)
        has_first_stage = first_column is not None
        if has_first_stage and not np.isfinite(pd.to_numeric(scored[first_column], errors="coerce")).all():
            raise ValueError(f"{name}: the first stage's {first_column} has missing or non-finite values")
        self._queries, self._texts, self._scores, self._first_stage = {}, {}, {}, {}
        for qid, group in scored.groupby("qid", sort=False):
            self._queries[qid] = group["query"].iloc[0]
            self._texts[qid] = group["text"].tolist()
            self._scores[qid] = group["teacher_score"].to_numpy(dtype=np.float32)
            if has_first_stage:
                self._first_stage[qid] = group[first_column].to_numpy(dtype=np.float32)
        self._qids = list(self._queries)
        self._sizes = np.array([len(self._texts[qid]) for qid in self._qids])
        self.name = name

    @classmethod
    def from_first_stage(
        cls,
        first_stage: pt.Transformer,
        teacher: pt.Transformer,
        topics: pd.DataFrame,
        docs: Mapping[str, str],
        *,
        depth: int = 50,
        cache_dir: str | os.PathLike | None = None,
        key: str | None = None,
        name: str = "distillation",
        verbose: bool = False,
    ) -> DistillationSource:
        """Scores the first stage's top ``depth`` candidates of every topic with ``teacher`` and builds the source."""
        candidates = first_stage_candidates(first_stage, topics, docs, depth=depth)
        candidates = candidates[candidates["text"].str.strip() != ""]
        scored = score_with_teacher(teacher, candidates, cache_dir=cache_dir, key=key, verbose=verbose)
        return cls(scored, name=name)

    def __len__(self) -> int:
        return len(self._qids)

    def sample(self, rng: np.random.Generator, num_negatives: int) -> TrainingGroup:
        """Draws a query with at least ``num_negatives + 1`` candidates and ``num_negatives + 1`` of them."""
        eligible = np.flatnonzero(self._sizes > num_negatives)
        if len(eligible) == 0:
            raise ValueError(f"{self.name}: no query has {num_negatives + 1} candidates; retrieve deeper or lower k")
        qid = self._qids[eligible[rng.integers(len(eligible))]]
        chosen = rng.choice(len(self._texts[qid]), size=num_negatives + 1, replace=False)
        scores = self._scores[qid][chosen]
        best = int(np.argmax(scores))
        chosen[[0, best]] = chosen[[best, 0]]
        return TrainingGroup(
            query=self._queries[qid],
            texts=[self._texts[qid][i] for i in chosen],
            pool_size=len(self._texts[qid]) - 1,
            teacher_scores=self._scores[qid][chosen].tolist(),
            first_stage_scores=self._first_stage[qid][chosen].tolist() if self._first_stage else None,
        )

    def describe(self) -> dict:
        """Says how many queries and candidates the source holds."""
        return {**super().describe(), "candidates": int(self._sizes.sum())}
