"""Dense candidate pools for distillation: a dense first stage's candidates with BM25's scores attached."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt

from .validation import first_stage_candidates

BM25_COLUMN = "bm25_score"
"""The column that holds each dense candidate's BM25 score, for a hybrid teacher's first-stage side."""


def dense_index_of(docs: Mapping[str, str], folder: str | os.PathLike, encoder, *, verbose: bool = False):
    """The dense index of ``docs`` (``{docno: text}``) at ``folder``, built with ``encoder`` when absent."""
    from ..dense import FaissIndex

    index = FaissIndex(folder)
    if not index.built():
        corpus = ({"docno": docno, "text": text} for docno, text in docs.items())
        index.indexer(encoder, verbose=verbose).index(corpus)
    return index


def dense_candidates_with_bm25(
    dense: pt.Transformer,
    bm25: pt.Transformer,
    topics: pd.DataFrame,
    docs: Mapping[str, str],
    *,
    depth: int,
) -> pd.DataFrame:
    """The dense stage's top ``depth`` candidates of each topic, with text and BM25's score of each.

    A candidate BM25 did not retrieve gets the lowest score BM25 gave that query (zero when it retrieved nothing),
    so that a hybrid teacher (``HybridTeacher(first_stage_column="bm25_score")``) can mix both sides over the
    candidates a dense first stage gives.

    Args:
        dense: A dense retriever (e.g. ``FaissIndex.retriever``).
        bm25: A BM25 retriever over the same documents; retrieve deeply, so that most dense candidates have a score.
        topics: ``qid, query``.
        docs: ``{docno: text}``.
        depth: Dense candidates a query.
    """
    candidates = first_stage_candidates(dense, topics, docs, depth=depth)
    candidates = candidates[candidates["text"].str.strip() != ""]
    lexical = bm25.transform(topics[["qid", "query"]])[["qid", "docno", "score"]].astype({"qid": str, "docno": str})
    lexical = lexical.rename(columns={"score": BM25_COLUMN})
    floor = lexical.groupby("qid")[BM25_COLUMN].min()
    merged = candidates.merge(lexical, on=["qid", "docno"], how="left", validate="one_to_one")
    missing = merged[BM25_COLUMN].isna()
    merged.loc[missing, BM25_COLUMN] = merged.loc[missing, "qid"].map(floor).fillna(0.0).to_numpy()
    merged[BM25_COLUMN] = merged[BM25_COLUMN].astype(np.float64)
    return merged.reset_index(drop=True)


def folder_name(label: str) -> str:
    """A folder name for a collection label (``nfcorpus:dev`` becomes ``nfcorpus_dev``)."""
    return re.sub(r"[^\w.-]+", "_", label)


def index_folder(root: str | os.PathLike, label: str) -> Path:
    """Where the dense index of the collection ``label`` lives under ``root``."""
    return Path(root) / "dense" / folder_name(label)


class DensePools:
    """Each collection's dense index and retriever, for distillation pools and validation over dense candidates.

    Args:
        collections: The collections (a ``cli_run.Collections``).
        encoder: The bi-encoder whose vectors the indexes hold (the poly-encoder's document side).
        root: Where the indexes are kept (one folder a collection and split).
    """

    def __init__(self, collections, encoder, root: str | os.PathLike):
        self.collections, self.encoder, self.root = collections, encoder, Path(root)
        self._indexes = {}

    def index(self, spec):
        """The dense index of ``spec``'s documents, built on first use."""
        if spec.label not in self._indexes:
            index = dense_index_of(self.collections.docs(spec), index_folder(self.root, spec.label), self.encoder,
                                   verbose=self.collections.verbose)
            self._indexes[spec.label] = (spec, index)
        return self._indexes[spec.label][1]

    def retriever(self, spec, depth: int) -> pt.Transformer:
        """The dense top ``depth`` of ``spec``'s documents (``(spec, depth)``, as validation asks for)."""
        return self.index(spec).retriever(self.encoder, num_results=depth)

    def source(self, spec, teacher, *, depth: int, held_out: set[str], bm25_depth: int = 1000,
               max_pseudo_queries: int | None = None, seed: int = 0):
        """A distillation source: dense top ``depth`` candidates scored by ``teacher``.

        The queries are ``spec``'s topics (less ``held_out``) or, for ``pseudo-title:`` and ``pseudo-sentence:``
        data, up to ``max_pseudo_queries`` pseudo-queries of its corpus (drawn with ``seed``), whose candidates are
        the bodies, indexed densely and with BM25 as the cross-encoder's pseudo-queries are.
        """
        from .distillation import DistillationSource, score_with_teacher

        if spec.kind in ("pseudo-title", "pseudo-sentence"):
            topics, docs, dense, lexical = self._pseudo_input(spec, depth, bm25_depth, max_pseudo_queries, seed)
            name = f"distil-dense:{spec.kind}:{spec.label}"
        elif spec.kind == "ranking":
            topics, _ = self.collections.topics_qrels(spec)
            topics = topics[~topics["qid"].isin(held_out)].reset_index(drop=True)
            docs = self.collections.docs(spec)
            dense, lexical = self.retriever(spec, depth), self.collections.bm25(spec, bm25_depth)
            name = f"distil-dense:{spec.label}"
        else:
            raise ValueError(f"dense candidates are drawn for a collection's topics or pseudo-queries, not "
                             f"{spec.kind!r} data ({spec.label})")
        candidates = dense_candidates_with_bm25(dense, lexical, topics, docs, depth=depth)
        scored = score_with_teacher(teacher, candidates, cache_dir=self.collections.index_dir / "teacher",
                                    key=f"{teacher!r}|dense{depth}", verbose=self.collections.verbose)
        return DistillationSource(scored, name=name)

    def _pseudo_input(self, spec, depth: int, bm25_depth: int, max_queries: int | None, seed: int):
        """Pseudo-queries of ``spec``'s corpus, their bodies, and dense and BM25 retrievers over the bodies."""
        from .cli_run import pseudo_distillation_input

        topics, lexical, bodies, folder = pseudo_distillation_input(
            spec, self.collections, max_queries=max_queries, seed=seed, depth=bm25_depth)
        index = dense_index_of(bodies, self.root / "dense" / folder, self.encoder, verbose=self.collections.verbose)
        return topics, bodies, index.retriever(self.encoder, num_results=depth), lexical

    def stored_vectors(self) -> tuple[list[str], np.ndarray]:
        """Every indexed document's text and stored vector, to spare encoding them again."""
        from .._corpus import docno_positions

        texts, vectors = [], []
        for spec, index in self._indexes.values():
            docs = self.collections.docs(spec)
            docnos = list(docno_positions(index.docnos()))  # in index order
            texts += [docs[docno] for docno in docnos]
            vectors.append(index.vectors(docnos))
        return texts, (np.concatenate(vectors) if vectors else np.empty((0, 0), dtype=np.float32))
