"""HybridTeacher: a first stage's score mixed with a bi-encoder's cosine, the teacher that shallow models distil."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._frames import require_columns, require_str_ids, require_texts, with_scores
from .._records import FrameTransformer
from ..anchor import per_query_zscores as zscores_by_query


def per_query_zscores(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Returns ``frame[column]`` standardised within each ``qid`` (mean 0, standard deviation 1; 0 where constant)."""
    return zscores_by_query(frame["qid"].to_numpy(), frame[column].to_numpy(dtype=np.float64))


class HybridTeacher(FrameTransformer):
    """Scores candidates by ``z(first stage score) + dense_weight * z(cosine)``, z-scores taken per query.

    The first stage's ``score`` (e.g. BM25) and a bi-encoder's query-document similarity are each standardised over
    the query's candidates and summed with weights. On a held-out biomedical collection this mix of BM25 and
    all-MiniLM-L6-v2 (weight 2 on the dense side) reranks better than either alone, so it serves as the teacher whose
    scores shallow cross-encoders distil. Document vectors are kept per text, so repeated candidates are encoded
    once per teacher.

    Example::

        teacher = HybridTeacher(pyterrier_shallow.BiEncoder(), dense_weight=2.0)
        pipeline = bm25(dataset, "./bm25") % 50 >> TextLoader(dataset) >> teacher

    Args:
        dense: A ``BiEncoder`` (``None``: all-MiniLM-L6-v2 offline, documents cut at 256 tokens).
        dense_weight: The weight of the dense z-score; the first stage's weighs 1.
        first_stage_column: The column that holds the first stage's score.
        text_field: The column that holds document text.
        verbose: Show progress bars while encoding.
    """

    schematic = {"label": "HybridTeacher", "help_url": None}

    def __init__(
        self,
        dense=None,
        *,
        dense_weight: float = 2.0,
        first_stage_column: str = "score",
        text_field: str = "text",
        verbose: bool = False,
    ):
        if not np.isfinite(dense_weight) or dense_weight < 0:
            raise ValueError(f"dense_weight must be a finite non-negative number, got {dense_weight}")
        if dense is None:
            from ..dense import BiEncoder

            dense = BiEncoder(doc_length=256, query_length=64)
        self.dense = dense
        self.dense_weight = float(dense_weight)
        self.first_stage_column = first_stage_column
        self.text_field = text_field
        self.verbose = verbose
        self._doc_vectors: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        lengths = f"query_length={getattr(self.dense, 'query_length', None)}, " \
                  f"doc_length={getattr(self.dense, 'doc_length', None)}"
        return (f"HybridTeacher({self.dense!r}, {lengths}, dense_weight={self.dense_weight}, "
                f"first_stage_column={self.first_stage_column!r})")

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Returns ``inp`` with the hybrid float32 ``score`` and a fresh ``rank``.

        The first stage's score is kept as ``first_stage_score`` when it came in ``score``.
        """
        require_columns(inp, ["qid", "query", "docno", self.text_field, self.first_stage_column], who="HybridTeacher")
        out = inp if self.first_stage_column != "score" else inp.assign(first_stage_score=inp["score"])
        if len(inp) == 0:
            return with_scores(out, np.empty(0, dtype=np.float32))
        require_str_ids(inp, who="HybridTeacher")
        require_texts(inp, "query", who="HybridTeacher", allow_empty=False)
        require_texts(inp, self.text_field, who="HybridTeacher", allow_empty=True)
        first_stage = pd.to_numeric(inp[self.first_stage_column], errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(first_stage).all():
            raise ValueError(f"HybridTeacher: column {self.first_stage_column!r} has missing or non-numeric values")
        cosine = self._cosines(inp)
        mixed = per_query_zscores(out.assign(_first=first_stage), "_first")
        mixed = mixed + self.dense_weight * per_query_zscores(out.assign(_cosine=cosine), "_cosine")
        return with_scores(out, mixed.astype(np.float32))

    def _cosines(self, inp: pd.DataFrame) -> np.ndarray:
        queries, query_codes = np.unique(inp["query"].to_numpy(dtype=str), return_inverse=True)
        query_vectors = self.dense.encode_queries(list(queries), verbose=False)
        texts = inp[self.text_field].tolist()
        missing = list(dict.fromkeys(text for text in texts if text not in self._doc_vectors))
        if missing:
            for text, vector in zip(missing, self.dense.encode_docs(missing, verbose=self.verbose), strict=True):
                self._doc_vectors[text] = vector
        doc_vectors = np.stack([self._doc_vectors[text] for text in texts])
        return np.einsum("ij,ij->i", query_vectors[query_codes], doc_vectors).astype(np.float64)
