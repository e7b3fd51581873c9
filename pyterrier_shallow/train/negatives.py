"""Hard negatives mined from a first stage, cached on disk, and sampled k at a time."""

from __future__ import annotations

import gzip
import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt

from .._frames import require_columns, require_str_ids
from .._io import atomic_write_bytes, digest

_CACHE_FORMAT = 1


class NegativePool:
    """Per-query candidate negatives (a first stage's ranking minus the known positives), sampled k at a time.

    Args:
        candidates: For each qid, the first stage's docnos, best first (positives may be among them).
        excluded: For each qid, docnos that are never negatives (every document judged relevant).
        corpus_docnos: Every docno of the corpus: candidates outside it are dropped, and a pool shorter than k is
            topped up with random documents from it.
        sample_depth: Sample only from the first ``sample_depth`` candidates (``None``: all of them).
    """

    def __init__(
        self,
        candidates: Mapping[str, Sequence[str]],
        excluded: Mapping[str, Iterable[str]] | None = None,
        *,
        corpus_docnos: Sequence[str] | None = None,
        sample_depth: int | None = None,
    ):
        if sample_depth is not None and sample_depth < 1:
            raise ValueError(f"sample_depth must be at least 1, got {sample_depth}")
        excluded = excluded or {}
        self._corpus = np.asarray(list(corpus_docnos), dtype=object) if corpus_docnos is not None else None
        known = set(self._corpus.tolist()) if self._corpus is not None else None
        self._pools: dict[str, list[str]] = {}
        for qid, docnos in candidates.items():
            skip = set(excluded.get(qid, ()))
            pool = [
                docno for docno in dict.fromkeys(docnos) if docno not in skip and (known is None or docno in known)
            ]
            self._pools[qid] = pool[:sample_depth] if sample_depth is not None else pool
        self._excluded = {qid: set(docnos) for qid, docnos in excluded.items()}
        self.sample_depth = sample_depth

    @classmethod
    def mine(
        cls,
        first_stage: pt.Transformer,
        topics: pd.DataFrame,
        qrels: pd.DataFrame,
        *,
        depth: int = 1000,
        corpus_docnos: Sequence[str] | None = None,
        sample_depth: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        key: str | None = None,
        batch_size: int = 64,
        verbose: bool = False,
    ) -> NegativePool:
        """Runs ``first_stage`` on ``topics`` and keeps its top ``depth`` documents minus every judged-relevant one.

        The raw rankings are cached in ``cache_dir`` under a name derived from the first stage (its ``repr``, or
        ``key`` when given), the depth and the topics, so a cache built from another first stage or other topics is
        never reused.

        Args:
            first_stage: A retriever (e.g. BM25) mapping ``qid, query`` to ``qid, docno, score, rank``.
            topics: The training queries (``qid``, ``query``).
            qrels: Judgements (``qid``, ``docno``, ``label``); documents with ``label > 0`` are never negatives.
            depth: How many candidates to keep per query.
            corpus_docnos: Every docno, to top up short pools with random documents.
            sample_depth: Sample only from the first ``sample_depth`` candidates.
            cache_dir: A folder for the cached rankings (``None``: no cache).
            key: Identifies the first stage in the cache name instead of its ``repr`` (needed when the ``repr``
                changes between runs, or stays the same when the index behind it changes).
            batch_size: Queries per call to the first stage.
            verbose: Show a progress bar.
        """
        topics = _check_topics(topics)
        excluded = positives_by_query(qrels, min_label=1)
        cache_path = None
        if cache_dir is not None:
            stage_key = key if key is not None else repr(first_stage)
            if key is None and re.search(r" at 0x[0-9a-f]+", stage_key):
                warnings.warn(
                    f"the repr of {type(first_stage).__name__} holds a memory address, so its negatives cache will "
                    "not be found again in another run; pass key= to name the first stage",
                    stacklevel=2,
                )
            topic_key = digest(topics["qid"].tolist(), topics["query"].tolist())
            name = f"negatives-{digest(_CACHE_FORMAT, stage_key, depth, topic_key)}.json.gz"
            cache_path = Path(cache_dir) / name
        candidates = _read_cache(cache_path) if cache_path is not None and cache_path.exists() else None
        if candidates is None:
            candidates = _run_first_stage(first_stage, topics, depth=depth, batch_size=batch_size, verbose=verbose)
            if cache_path is not None:
                payload = {"format": _CACHE_FORMAT, "first_stage": repr(first_stage), "depth": depth,
                           "candidates": candidates}
                atomic_write_bytes(cache_path, gzip.compress(json.dumps(payload).encode("utf8")))
        return cls(candidates, excluded, corpus_docnos=corpus_docnos, sample_depth=sample_depth)

    def __len__(self) -> int:
        return len(self._pools)

    def __contains__(self, qid: str) -> bool:
        return qid in self._pools

    def pool(self, qid: str) -> list[str]:
        """Returns the candidate negatives of ``qid``, best first."""
        return list(self._pools.get(qid, []))

    def pool_size(self, qid: str) -> int:
        """Returns N, the number of candidate negatives of ``qid``."""
        return len(self._pools.get(qid, ()))

    def sample(self, qid: str, k: int, rng: np.random.Generator) -> tuple[list[str], int]:
        """Draws ``k`` distinct negatives for ``qid``, topping up with random corpus documents if the pool is short.

        Args:
            qid: The query.
            k: How many negatives.
            rng: The random generator.

        Returns:
            The docnos, and N for gBCE: the pool size, or ``k`` when the pool was topped up (alpha = 1).
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        pool = self._pools.get(qid, [])
        if len(pool) >= k:
            chosen = rng.choice(len(pool), size=k, replace=False)
            return [pool[i] for i in chosen], len(pool)
        extra = self._random_documents(k - len(pool), exclude=set(pool) | self._excluded.get(qid, set()), rng=rng)
        return list(pool) + extra, k

    def _random_documents(self, count: int, *, exclude: set[str], rng: np.random.Generator) -> list[str]:
        if self._corpus is None:
            raise ValueError(
                f"a query has fewer candidate negatives than the {count} more asked for; pass corpus_docnos to top "
                "pools up with random documents"
            )
        if len(self._corpus) - len(exclude) < count:
            raise ValueError(f"the corpus has too few documents to draw {count} more negatives")
        chosen: list[str] = []
        while len(chosen) < count:
            for docno in self._corpus[rng.integers(0, len(self._corpus), size=2 * count)]:
                if docno not in exclude:
                    exclude.add(docno)
                    chosen.append(docno)
                    if len(chosen) == count:
                        break
        return chosen


def positives_by_query(qrels: pd.DataFrame, *, min_label: int = 1) -> dict[str, list[str]]:
    """Returns, per qid, the docnos judged with ``label >= min_label`` (qrels order)."""
    require_columns(qrels, ["qid", "docno", "label"], who="qrels")
    require_str_ids(qrels, who="qrels")
    relevant = qrels[qrels["label"] >= min_label]
    return {qid: list(dict.fromkeys(group["docno"])) for qid, group in relevant.groupby("qid", sort=False)}


def _check_topics(topics: pd.DataFrame) -> pd.DataFrame:
    require_columns(topics, ["qid", "query"], who="topics")
    require_str_ids(topics, ["qid"], who="topics")
    if len(topics) == 0:
        raise ValueError("topics is empty: there are no queries to mine negatives for")
    if topics["qid"].duplicated().any():
        raise ValueError(f"topics has duplicate qids, e.g. {topics['qid'][topics['qid'].duplicated()].iloc[0]!r}")
    return topics[["qid", "query"]].reset_index(drop=True)


def _run_first_stage(
    first_stage: pt.Transformer, topics: pd.DataFrame, *, depth: int, batch_size: int, verbose: bool
) -> dict[str, list[str]]:
    candidates: dict[str, list[str]] = {qid: [] for qid in topics["qid"]}
    starts = range(0, len(topics), batch_size)
    for start in pt.tqdm(starts, desc="mining negatives", unit="batch", disable=not verbose):
        results = first_stage.transform(topics.iloc[start : start + batch_size])
        if len(results) == 0:
            continue
        require_columns(results, ["qid", "docno"], who="first stage output")
        results = results.astype({"qid": str, "docno": str})
        if "rank" in results.columns:
            results = results.sort_values(["qid", "rank"], kind="stable")
        elif "score" in results.columns:
            results = results.sort_values(["qid", "score"], ascending=[True, False], kind="stable")
        for qid, group in results.groupby("qid", sort=False):
            candidates[qid] = group["docno"].head(depth).tolist()
    return candidates


def _read_cache(path: Path) -> dict[str, list[str]] | None:
    try:
        payload = json.loads(gzip.decompress(path.read_bytes()).decode("utf8"))
    except (OSError, EOFError, ValueError) as err:
        warnings.warn(f"ignoring an unreadable negatives cache {path} ({err}); mining again", stacklevel=3)
        return None
    if payload.get("format") != _CACHE_FORMAT:
        return None
    return {qid: list(docnos) for qid, docnos in payload["candidates"].items()}
