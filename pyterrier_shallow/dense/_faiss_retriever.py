"""Retrieving from a FaissIndex: query vectors in, ranked docnos out."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import faiss
import numpy as np
import pandas as pd
import pyterrier as pt

from pyterrier_shallow._equality import EqualByArguments
from pyterrier_shallow._frames import require_columns, require_str_ids, require_texts
from pyterrier_shallow._records import FrameTransformer
from pyterrier_shallow.dense._encoders import encode_column, stack_vectors
from pyterrier_shallow.dense._faiss_types import DEFAULT_EF_SEARCH, check_search_options, search_parameters
from pyterrier_shallow.dense.bi_encoder import BiEncoder
from pyterrier_shallow.dense.faiss_index import FaissIndex

_RESULT_COLUMNS = ("docid", "docno", "score", "rank")


class FaissRetriever(EqualByArguments, FrameTransformer):
    """Retrieves the nearest documents of each query from a :class:`FaissIndex` by inner product.

    Made by :meth:`FaissIndex.retriever`; see there for the options. Takes a query frame (one row per ``qid``) with
    ``query`` or ``query_vec`` and returns every input column plus ``docid`` (position in the index), ``docno``,
    float32 ``score`` and ``rank``.
    """

    schematic = {"label": "FaissRetriever", "help_url": None}

    def __init__(
        self,
        index: FaissIndex,
        encoder: BiEncoder | None,
        *,
        num_results: int = 1000,
        ef_search: int | None = None,
        nprobe: int | None = None,
        query_batch_size: int = 1024,
        threads: int | None = None,
        verbose: bool = False,
    ):
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if num_results < 1:
            raise ValueError(f"num_results must be at least 1, got {num_results}")
        if query_batch_size < 1:
            raise ValueError(f"query_batch_size must be at least 1, got {query_batch_size}")
        self.index = index
        self.encoder = encoder
        self.num_results = num_results
        self.ef_search = ef_search
        self.nprobe = nprobe
        self.query_batch_size = query_batch_size
        self.threads = threads
        self.verbose = verbose
        check_search_options(index.meta["index_type"], ef_search=ef_search, nprobe=nprobe)

    def __repr__(self) -> str:
        return f"{self.index!r}.retriever({self.encoder!r}, num_results={self.num_results})"

    def fuse_rank_cutoff(self, k: int) -> pt.Transformer:
        """Returns a retriever that searches for ``k`` results when ``k`` is below ``num_results`` (``self % k``)."""
        if k >= self.num_results:
            return self
        fused = copy.copy(self)
        fused.num_results = k
        return fused

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Returns ``num_results`` rows a query, best first."""
        query_column = "query_vec" if "query_vec" in inp.columns or self.encoder is None else "query"
        require_columns(inp, ["qid", query_column], who="FaissRetriever")
        present = [column for column in _RESULT_COLUMNS if column in inp.columns]
        if present:
            raise ValueError(
                f"FaissRetriever takes a query frame, but the input already has {present}; "
                "to re-rank retrieved documents, use a scorer such as BiEncoder.text_scorer()"
            )
        if len(inp) == 0:
            return _empty_results(inp)
        require_str_ids(inp, ["qid"], who="FaissRetriever")
        if inp["qid"].duplicated().any():
            repeated = inp.loc[inp["qid"].duplicated(), "qid"].unique()[:5].tolist()
            raise ValueError(f"FaissRetriever: qid(s) {repeated} appear more than once; give one row per query")
        if query_column == "query":
            require_texts(inp, "query", who="FaissRetriever", allow_empty=False)
            vectors = np.stack(encode_column(inp["query"], self.encoder.encode_queries, self.verbose))
        else:
            vectors = stack_vectors(inp["query_vec"], who="FaissRetriever", column="query_vec")
        if vectors.shape[1] != self.index.dimension:
            raise ValueError(
                f"FaissRetriever: query vectors have {vectors.shape[1]} dimensions, the index holds "
                f"{self.index.dimension}-dimensional ones"
            )
        scores, ids = self.search(vectors)
        return self._results(inp, scores, ids)

    def search(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Searches FAISS for the nearest ``num_results`` documents of each vector; ids are -1 past the last hit."""
        index = self.index.faiss_index()
        k = min(self.num_results, index.ntotal)
        params = search_parameters(index, ef_search=max(self.ef_search or DEFAULT_EF_SEARCH, k), nprobe=self.nprobe)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        scores = np.empty((len(vectors), k), dtype=np.float32)
        ids = np.empty((len(vectors), k), dtype=np.int64)
        starts = range(0, len(vectors), self.query_batch_size)
        with _faiss_threads(self.threads):
            for start in pt.tqdm(starts, desc="FaissRetriever", unit="batch", disable=not self.verbose):
                stop = start + self.query_batch_size
                scores[start:stop], ids[start:stop] = index.search(vectors[start:stop], k, params=params)
        return scores, ids

    def _results(self, inp: pd.DataFrame, scores: np.ndarray, ids: np.ndarray) -> pd.DataFrame:
        found = ids >= 0
        rows = np.repeat(np.arange(len(inp)), found.sum(axis=1))
        ranks = (np.cumsum(found, axis=1) - 1)[found]
        docids = ids[found]
        out = inp.iloc[rows].reset_index(drop=True)
        out["docid"] = docids
        out["docno"] = np.char.decode(np.asarray(self.index.docnos()[docids]), "utf-8")
        out["score"] = scores[found].astype(np.float32)
        out["rank"] = ranks.astype(np.int64)
        return out


@contextlib.contextmanager
def _faiss_threads(threads: int | None) -> Iterator[None]:
    """Sets FAISS's OpenMP thread count for the duration of a search (``None``: leaves it alone)."""
    if threads is None:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _empty_results(inp: pd.DataFrame) -> pd.DataFrame:
    out = inp.iloc[:0].reset_index(drop=True).copy()
    out["docid"] = pd.Series(dtype=np.int64)
    out["docno"] = pd.Series(dtype=str)
    out["score"] = pd.Series(dtype=np.float32)
    out["rank"] = pd.Series(dtype=np.int64)
    return out
