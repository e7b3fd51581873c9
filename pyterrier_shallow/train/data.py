"""Training groups (a query, its positive, k negatives) drawn from collections, labelled pairs, or a mix of them."""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyterrier as pt

from .._frames import require_columns, require_str_ids, require_texts
from .negatives import NegativePool, positives_by_query


@dataclass
class TrainingGroup:
    """One query's share of a training step.

    Attributes:
        query: The query text.
        texts: The positive's text first, then the k negatives' texts.
        pool_size: N, the number of candidates the negatives were sampled from (gBCE's alpha = k / N).
        teacher_scores: A teacher's score of each text (distillation), or ``None``.
        first_stage_scores: The first stage's score of each text (to train an anchored model), or ``None``.
    """

    query: str
    texts: list[str]
    pool_size: int
    teacher_scores: list[float] | None = None
    first_stage_scores: list[float] | None = None


class TrainingSource(ABC):
    """Draws :class:`TrainingGroup` s at random; ``len()`` is its number of training queries."""

    name: str = "source"

    @abstractmethod
    def __len__(self) -> int:
        """The number of queries groups are drawn from."""

    @abstractmethod
    def sample(self, rng: np.random.Generator, num_negatives: int) -> TrainingGroup:
        """Draws one query, one of its positives and ``num_negatives`` negatives."""

    def describe(self) -> dict:
        """Says what the source holds, for the training card."""
        return {"name": self.name, "kind": type(self).__name__, "queries": len(self)}


def corpus_iter(dataset, split: str | None) -> Iterable[dict]:
    """Returns the documents of ``dataset`` for ``split`` (its own corpus where each split has one)."""
    try:
        return dataset.get_corpus_iter(split=split)
    except TypeError:  # datasets with a single corpus take no split
        return dataset.get_corpus_iter()


def docs_from_corpus(corpus_iter: Iterable[dict], *, text_field: str = "text") -> dict[str, str]:
    """Reads a corpus iterator into ``{docno: text}``.

    Duplicate docnos and non-string docnos or texts raise a ``ValueError``; documents with empty text are dropped
    with a warning (they can be neither positives nor useful negatives).

    Args:
        corpus_iter: Dicts with ``docno`` and ``text_field``.
        text_field: The field holding the text.
    """
    docs: dict[str, str] = {}
    empty = 0
    for doc in corpus_iter:
        docno, text = doc.get("docno"), doc.get(text_field)
        if not isinstance(docno, str):
            raise ValueError(f"docno must be a str, got {docno!r} ({type(docno).__name__})")
        if not isinstance(text, str):
            raise ValueError(f"document {docno!r} has a missing or non-string {text_field!r}: {text!r}")
        if docno in docs:
            raise ValueError(f"duplicate docno {docno!r} in the corpus")
        if not text.strip():
            empty += 1
            docs[docno] = ""
            continue
        docs[docno] = text
    if empty:
        warnings.warn(f"dropping {empty} document(s) with empty {text_field!r}", stacklevel=2)
        docs = {docno: text for docno, text in docs.items() if text}
    if not docs:
        raise ValueError("the corpus has no documents with text")
    return docs


class RankingSource(TrainingSource):
    """Groups from a collection: topics, qrels (the positives) and a pool of mined negatives per query.

    Args:
        topics: ``qid``, ``query``.
        qrels: ``qid``, ``docno``, ``label``; documents with ``label >= min_label`` are positives.
        docs: ``{docno: text}`` of the corpus.
        negatives: The mined negatives (see :meth:`NegativePool.mine`).
        min_label: The lowest label that counts as relevant.
        name: A name for the training card.
    """

    def __init__(
        self,
        topics: pd.DataFrame,
        qrels: pd.DataFrame,
        docs: Mapping[str, str],
        negatives: NegativePool,
        *,
        min_label: int = 1,
        name: str = "ranking",
    ):
        require_columns(topics, ["qid", "query"], who=f"{name} topics")
        require_str_ids(topics, ["qid"], who=f"{name} topics")
        require_texts(topics, "query", who=f"{name} topics", allow_empty=False)
        if topics["qid"].duplicated().any():
            raise ValueError(f"{name} topics have duplicate qids")
        positives = positives_by_query(qrels, min_label=min_label)
        self._queries = dict(zip(topics["qid"], topics["query"], strict=True))
        self._positives = {
            qid: [docno for docno in positives.get(qid, []) if docno in docs] for qid in self._queries
        }
        self._qids = [qid for qid, found in self._positives.items() if found]
        if not self._qids:
            raise ValueError(f"{name}: no query has a judged-relevant document (label >= {min_label}) in the corpus")
        self._docs = docs
        self._negatives = negatives
        self.min_label = min_label
        self.name = name

    @classmethod
    def from_dataset(
        cls,
        dataset,
        split: str | None,
        first_stage: pt.Transformer,
        *,
        depth: int = 1000,
        sample_depth: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        key: str | None = None,
        min_label: int = 1,
        name: str | None = None,
        verbose: bool = False,
    ) -> RankingSource:
        """Builds a source from a dataset (``get_topics``, ``get_qrels``, ``get_corpus_iter``) and a first stage.

        Args:
            dataset: The collection.
            split: The topics/qrels split (``None``: the dataset's default).
            first_stage: Mines the negatives (e.g. BM25 over the same corpus).
            depth: Candidates kept per query.
            sample_depth: Sample negatives only from the first this many candidates.
            cache_dir: Caches the first stage's rankings (see :meth:`NegativePool.mine`).
            key: Names the first stage in the cache.
            min_label: The lowest label that counts as relevant.
            name: A name for the training card (default: ``dataset:split``).
            verbose: Show progress bars.
        """
        topics = dataset.get_topics(split) if split is not None else dataset.get_topics()
        qrels = dataset.get_qrels(split) if split is not None else dataset.get_qrels()
        docs = docs_from_corpus(corpus_iter(dataset, split))
        negatives = NegativePool.mine(
            first_stage, topics, qrels, depth=depth, corpus_docnos=list(docs), sample_depth=sample_depth,
            cache_dir=cache_dir, key=key, verbose=verbose,
        )
        label = name or f"{getattr(dataset, 'name', type(dataset).__name__)}:{split}"
        return cls(topics, qrels, docs, negatives, min_label=min_label, name=label)

    def __len__(self) -> int:
        return len(self._qids)

    def sample(self, rng: np.random.Generator, num_negatives: int) -> TrainingGroup:
        """Draws a query uniformly, one of its positives uniformly, and ``num_negatives`` mined negatives."""
        qid = self._qids[rng.integers(len(self._qids))]
        positives = self._positives[qid]
        positive = positives[rng.integers(len(positives))]
        negatives, pool_size = self._negatives.sample(qid, num_negatives, rng)
        missing = [docno for docno in negatives if docno not in self._docs]
        if missing:
            raise KeyError(f"{self.name}: negatives {missing[:3]} of query {qid!r} are not in the corpus")
        texts = [self._docs[positive]] + [self._docs[docno] for docno in negatives]
        return TrainingGroup(self._queries[qid], texts, pool_size)

    def describe(self) -> dict:
        """Says how many queries, positives and mean candidate negatives the source holds."""
        pools = [self._negatives.pool_size(qid) for qid in self._qids]
        return {
            **super().describe(),
            "positives": sum(len(self._positives[qid]) for qid in self._qids),
            "min_label": self.min_label,
            "mean_pool_size": float(np.mean(pools)),
            "documents": len(self._docs),
        }


class PairsSource(TrainingSource):
    """Groups from labelled (query, text, label) pairs, each query with its own candidates (e.g. WikiQA).

    Negatives are the query's own non-relevant candidates; a query with fewer than k is topped up with random
    candidate texts of other queries (and its N is then k, i.e. alpha = 1).

    Args:
        pairs: ``qid``, ``query``, ``text``, ``label`` (relevant when ``label >= min_label``).
        min_label: The lowest label that counts as relevant.
        name: A name for the training card.
    """

    def __init__(self, pairs: pd.DataFrame, *, min_label: int = 1, name: str = "pairs"):
        require_columns(pairs, ["qid", "query", "text", "label"], who=f"{name} pairs")
        if len(pairs) == 0:
            raise ValueError(f"{name}: the pairs frame is empty")
        require_str_ids(pairs, ["qid"], who=f"{name} pairs")
        require_texts(pairs, "query", who=f"{name} pairs", allow_empty=False)
        require_texts(pairs, "text", who=f"{name} pairs", allow_empty=False)
        if not pd.api.types.is_numeric_dtype(pairs["label"]) or pairs["label"].isna().any():
            raise ValueError(f"{name}: label must be numeric with no missing values, got dtype {pairs['label'].dtype}")
        self._queries: dict[str, str] = {}
        self._positives: dict[str, list[str]] = {}
        self._negatives: dict[str, list[str]] = {}
        for qid, group in pairs.groupby("qid", sort=False):
            relevant = group["label"] >= min_label
            if relevant.any():
                self._queries[qid] = group["query"].iloc[0]
                self._positives[qid] = list(dict.fromkeys(group.loc[relevant, "text"]))
                self._negatives[qid] = [text for text in dict.fromkeys(group.loc[~relevant, "text"])
                                        if text not in self._positives[qid]]
        if not self._queries:
            raise ValueError(f"{name}: no query has a pair with label >= {min_label}")
        self._qids = list(self._queries)
        self._all_texts = np.asarray(list(dict.fromkeys(pairs["text"])), dtype=object)
        self.min_label = min_label
        self.name = name

    @classmethod
    def from_dataset(cls, dataset, split: str | None, *, min_label: int = 1, name: str | None = None) -> PairsSource:
        """Builds the pairs by joining a dataset's topics, qrels (every judged document) and corpus texts."""
        topics = dataset.get_topics(split) if split is not None else dataset.get_topics()
        qrels = dataset.get_qrels(split) if split is not None else dataset.get_qrels()
        docs = docs_from_corpus(corpus_iter(dataset, split))
        pairs = qrels[qrels["docno"].isin(docs.keys())].merge(topics[["qid", "query"]], on="qid", how="inner")
        pairs = pairs.assign(text=pairs["docno"].map(docs))
        label = name or f"{getattr(dataset, 'name', type(dataset).__name__)}:{split}"
        return cls(pairs, min_label=min_label, name=label)

    def __len__(self) -> int:
        return len(self._qids)

    def sample(self, rng: np.random.Generator, num_negatives: int) -> TrainingGroup:
        """Draws a query, one of its relevant texts and ``num_negatives`` of its other candidates."""
        qid = self._qids[rng.integers(len(self._qids))]
        positives, own = self._positives[qid], self._negatives[qid]
        positive = positives[rng.integers(len(positives))]
        if len(own) >= num_negatives:
            chosen = [own[i] for i in rng.choice(len(own), size=num_negatives, replace=False)]
            return TrainingGroup(self._queries[qid], [positive, *chosen], len(own))
        exclude = set(own) | set(positives)
        if len(self._all_texts) - len(exclude) < num_negatives - len(own):
            raise ValueError(f"{self.name}: too few texts to draw {num_negatives} negatives")
        extra: list[str] = []
        while len(own) + len(extra) < num_negatives:
            text = self._all_texts[rng.integers(len(self._all_texts))]
            if text not in exclude:
                exclude.add(text)
                extra.append(text)
        return TrainingGroup(self._queries[qid], [positive, *own, *extra], num_negatives)

    def describe(self) -> dict:
        """Says how many queries, positives and own negatives the source holds."""
        return {
            **super().describe(),
            "positives": sum(len(texts) for texts in self._positives.values()),
            "negatives": sum(len(texts) for texts in self._negatives.values()),
            "min_label": self.min_label,
        }


class MixedSource(TrainingSource):
    """Draws each group from one of several sources, picked with the given weights.

    Args:
        sources: The sources.
        weights: Their relative weights (default: proportional to their numbers of queries).
        name: A name for the training card.
    """

    def __init__(self, sources: Sequence[TrainingSource], weights: Sequence[float] | None = None, *, name="mixed"):
        if not sources:
            raise ValueError("MixedSource needs at least one source")
        if weights is None:
            weights = [len(source) for source in sources]
        if len(weights) != len(sources):
            raise ValueError(f"{len(sources)} sources but {len(weights)} weights")
        weights = np.asarray(weights, dtype=np.float64)
        if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights must be finite, non-negative and not all zero, got {weights.tolist()}")
        self._sources = list(sources)
        self._probabilities = weights / weights.sum()
        self.name = name

    def __len__(self) -> int:
        return sum(len(source) for source in self._sources)

    def sample(self, rng: np.random.Generator, num_negatives: int) -> TrainingGroup:
        """Picks a source by weight and draws a group from it."""
        return self._sources[rng.choice(len(self._sources), p=self._probabilities)].sample(rng, num_negatives)

    def describe(self) -> dict:
        """Describes every source with its mixing probability."""
        return {
            **super().describe(),
            "sources": [
                {**source.describe(), "probability": float(probability)}
                for source, probability in zip(self._sources, self._probabilities, strict=True)
            ],
        }
