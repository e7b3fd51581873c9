"""BM25Retriever: PISA's BM25 behind the project's input checks, picklable (it reopens its index where unpickled)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt

from pyterrier_shallow._frames import require_columns, require_str_ids, require_texts
from pyterrier_shallow._native_output import native_output_held_back
from pyterrier_shallow._records import FrameTransformer
from pyterrier_shallow._warnings import warn_user

_WORD = re.compile(r"\w")


class BM25Retriever(FrameTransformer):
    """Retrieves ``num_results`` documents per query with BM25 from a PISA index (see :func:`bm25`).

    Input: ``qid`` (``str``, each once) and ``query`` (``str``); every input column is kept, ``docno``, float32
    ``score`` and ``rank`` are added. A missing query is an error naming its row; a query with no indexable term
    (empty, blank, only punctuation, emoji or control characters) matches no document, so it gives no rows: such
    queries are counted in one warning. The PISA index is opened on first use and again wherever the retriever is
    unpickled (the path must be readable there), so pipelines that hold it can be sent to other processes.

    Args:
        path: The PISA index folder.
        num_results: Documents returned per query.
        k1: BM25 ``k1``.
        b: BM25 ``b``.
        stemmer: The index's stemmer.
        stopwords: The stopword list applied to queries (``None``: the index's).
        threads: Retrieval threads.
        verbose: Show a progress bar (only with ``threads=1``).
    """

    schematic = {"label": "BM25", "help_url": None}

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        num_results: int = 1000,
        k1: float = 0.9,
        b: float = 0.4,
        stemmer: str = "porter2",
        stopwords: str | None = None,
        threads: int = 1,
        verbose: bool = False,
    ):
        if num_results < 1:
            raise ValueError(f"num_results must be at least 1, got {num_results}")
        self.path = str(path)
        self.num_results = int(num_results)
        self.k1 = float(k1)
        self.b = float(b)
        self.stemmer = stemmer
        self.stopwords = stopwords
        self.threads = int(threads)
        self.verbose = verbose
        self._retriever = None

    def __repr__(self) -> str:
        return f"BM25Retriever({self.path!r}, num_results={self.num_results}, k1={self.k1}, b={self.b})"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_retriever": None}  # PISA's handle does not pickle; reopened where needed

    def fuse_rank_cutoff(self, k: int) -> BM25Retriever | None:
        """``retriever % k`` retrieves only ``k`` documents per query."""
        if k >= self.num_results:
            return None
        return BM25Retriever(self.path, num_results=k, k1=self.k1, b=self.b, stemmer=self.stemmer,
                             stopwords=self.stopwords, threads=self.threads, verbose=self.verbose)

    def _pisa(self) -> pt.Transformer:
        if self._retriever is None:
            from pyterrier_shallow.bm25 import open_index

            index = open_index(Path(self.path), stemmer=self.stemmer, stopwords=self.stopwords, threads=self.threads)
            # pyterrier-pisa iterates its progress bar from several threads, which fails now and then: a retriever
            # with more than one thread shows none
            with native_output_held_back():  # the first use compresses the index, which PISA logs stage by stage
                self._retriever = index.bm25(k1=self.k1, b=self.b, num_results=self.num_results,
                                             threads=self.threads, verbose=self.verbose and self.threads == 1)
        return self._retriever

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Returns the top ``num_results`` documents of each query of ``inp``."""
        who = "BM25Retriever"
        require_columns(inp, ["qid", "query"], who=who)
        if len(inp) == 0:
            return inp.assign(docno=pd.Series([], dtype=object), score=pd.Series([], dtype=np.float32),
                              rank=pd.Series([], dtype=np.int64))
        require_str_ids(inp, ["qid"], who=who)
        repeated = inp["qid"][inp["qid"].duplicated()].unique()
        if len(repeated):
            raise ValueError(f"{who}: {len(repeated)} qid(s) occur more than once (first: {repeated[0]!r}); give "
                             "each query once, e.g. topics.drop_duplicates('qid')")
        require_texts(inp, "query", who=who, allow_empty=True)
        out = self._pisa().transform(inp.drop(columns=[c for c in ("docno", "score", "rank") if c in inp.columns]))
        matched = set(out["qid"].unique())
        unmatched = inp.loc[~inp["qid"].isin(matched)]
        if len(unmatched):
            no_terms = int((~unmatched["query"].map(lambda query: bool(_WORD.search(query)))).sum())
            warn_user(
                f"{who}: {len(unmatched)} of {len(inp)} queries matched no document and give no rows "
                f"({no_terms} of them have no word characters; first qid: {unmatched['qid'].iloc[0]!r})"
            )
        out["score"] = out["score"].astype(np.float32)
        return out
