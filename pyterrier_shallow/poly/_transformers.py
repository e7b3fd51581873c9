"""The transformers a PolyEncoder makes: a reranker over stored document vectors and a text scorer."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pyterrier_shallow._equality import EqualByArguments
from pyterrier_shallow._frames import require_columns, require_str_ids, require_texts, with_scores
from pyterrier_shallow._records import FrameTransformer
from pyterrier_shallow.anchor import Anchor, anchor_inputs, apply_anchor, resolve_anchor
from pyterrier_shallow.dense._encoders import encode_column, stack_vectors
from pyterrier_shallow.dense._stored_vectors import candidate_vectors
from pyterrier_shallow.dense.faiss_index import FaissIndex
from pyterrier_shallow.poly.poly_encoder import PolyEncoder


class PolyIndexReranker(EqualByArguments, FrameTransformer):
    """Scores each candidate with the poly-encoder, reading its document vector from a :class:`FaissIndex`.

    No document is encoded at query time: the vectors the index holds are reconstructed by docno (exactly for
    ``flat`` and ``hnsw`` indexes; IVF-PQ gives back its compressed approximation). Each distinct query is encoded
    once per call.

    Args:
        poly: The poly-encoder.
        index: The index that holds the candidates' vectors, built with the poly-encoder's ``bi_encoder`` (another
            model's index is an error: its vectors would be scored as if they were this encoder's).
        anchor: How the first stage's ``score`` is mixed in: ``None``, as the poly-encoder's folder says;
            ``False``, never; ``True``, the folder's mix or equal weights; or an :class:`~pyterrier_shallow.Anchor`.
        verbose: Show a progress bar over queries.
    """

    schematic = {"label": "PolyReranker", "help_url": None}

    def __init__(self, poly: PolyEncoder, index: FaissIndex | str, *, anchor: Anchor | bool | None = None,
                 verbose: bool = False):
        self.poly = poly
        self.index = index if isinstance(index, FaissIndex) else FaissIndex(index)
        self.index.check_encoder(poly.bi_encoder, strict=True)
        self.anchor = anchor
        self.anchoring = resolve_anchor(anchor, poly.path)
        self.verbose = verbose

    def __repr__(self) -> str:
        anchored = "" if self.anchor is None else f", anchor={self.anchor!r}"
        return f"{self.poly!r}.reranker({self.index!r}{anchored})"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Returns ``inp`` with float32 ``score`` and a fresh ``rank``."""
        vectors = candidate_vectors(inp, self.vectors, who="PolyIndexReranker")
        if vectors is None:
            return with_scores(inp, np.empty(0, dtype=np.float32))
        first_stage = anchor_inputs(inp, self.anchoring, who="PolyIndexReranker")
        scores = self.poly.score_pairs(inp["query"].tolist(), vectors, verbose=self.verbose)
        return with_scores(inp, apply_anchor(self.anchoring, inp, first_stage, scores))

    def vectors(self, docnos: list[str]) -> np.ndarray:
        """Returns the stored vectors of ``docnos`` (float32, one row each).

        Raises:
            KeyError: When some docnos are not in the index.
        """
        return self.index.vectors(docnos, who="PolyIndexReranker", instead="poly.text_scorer()")


class PolyTextScorer(EqualByArguments, FrameTransformer):
    """Scores each candidate with the poly-encoder, encoding its text (or taking its ``doc_vec`` when present).

    Args:
        poly: The poly-encoder.
        anchor: How the first stage's ``score`` is mixed in, as for :meth:`PolyEncoder.reranker`.
        verbose: Show progress bars.
    """

    schematic = {"label": "PolyScorer", "help_url": None}

    def __init__(self, poly: PolyEncoder, *, anchor: Anchor | bool | None = None, verbose: bool = False):
        self.poly = poly
        self.anchor = anchor
        self.anchoring = resolve_anchor(anchor, poly.path)
        self.verbose = verbose

    def __repr__(self) -> str:
        anchored = "" if self.anchor is None else f"anchor={self.anchor!r}"
        return f"{self.poly!r}.text_scorer({anchored})"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Returns ``inp`` with float32 ``score`` and a fresh ``rank``."""
        field = self.poly.bi_encoder.text_field
        doc_side = "doc_vec" if "doc_vec" in inp.columns else field
        require_columns(inp, ["qid", "query", "docno", doc_side], who="PolyTextScorer")
        if len(inp) == 0:
            return with_scores(inp, np.empty(0, dtype=np.float32))
        require_str_ids(inp, who="PolyTextScorer")
        require_texts(inp, "query", who="PolyTextScorer", allow_empty=False)
        first_stage = anchor_inputs(inp, self.anchoring, who="PolyTextScorer")
        if doc_side == "doc_vec":
            vectors = stack_vectors(inp["doc_vec"], who="PolyTextScorer", column="doc_vec")
        else:
            require_texts(inp, field, who="PolyTextScorer", allow_empty=True)
            vectors = np.stack(encode_column(inp[field], self.poly.bi_encoder.encode_docs, self.verbose))
        scores = self.poly.score_pairs(inp["query"].tolist(), vectors, verbose=self.verbose)
        return with_scores(inp, apply_anchor(self.anchoring, inp, first_stage, scores))
