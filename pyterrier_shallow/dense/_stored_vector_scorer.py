"""StoredVectorScorer: scores any first stage's candidates with the document vectors a FaissIndex stores."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pyterrier_shallow._equality import EqualByArguments
from pyterrier_shallow._frames import with_scores
from pyterrier_shallow._records import FrameTransformer
from pyterrier_shallow.anchor import Anchor, anchor_inputs, apply_anchor, resolve_anchor
from pyterrier_shallow.dense._encoders import encode_column
from pyterrier_shallow.dense._stored_vectors import candidate_vectors
from pyterrier_shallow.dense.bi_encoder import BiEncoder
from pyterrier_shallow.dense.faiss_index import FaissIndex


class StoredVectorScorer(EqualByArguments, FrameTransformer):
    """Scores each candidate by its query's vector and the document vector stored in a :class:`FaissIndex`.

    The bi-encoder as a reranker without encoding documents at query time: each distinct query is encoded once and
    each candidate's vector is read back from the index by docno. Make it with ``index.scorer(encoder)``.

    Args:
        index: The index that holds the candidates' vectors.
        encoder: The model that built the index (another model is an error).
        anchor: Mixes the first stage's ``score`` into the cosine, as for ``encoder.text_scorer(anchor=...)``.
        verbose: Show a progress bar while encoding queries.
    """

    schematic = {"label": "StoredVectorScorer", "help_url": None}

    def __init__(self, index: FaissIndex, encoder: BiEncoder, *, anchor: Anchor | bool | None = None,
                 verbose: bool = False):
        self.index = index if isinstance(index, FaissIndex) else FaissIndex(index)
        self.encoder = encoder
        self.anchor = anchor
        self.anchoring = resolve_anchor(anchor)
        self.index.check_encoder(encoder, strict=True)
        self.verbose = verbose

    def __repr__(self) -> str:
        anchored = "" if self.anchor in (None, False) else f", anchor={self.anchor!r}"
        return f"{self.index!r}.scorer({self.encoder!r}{anchored})"

    def _vectors(self, docnos: list[str]) -> np.ndarray:
        return self.index.vectors(docnos, who="StoredVectorScorer", instead="encoder.text_scorer()")

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Returns ``inp`` with float32 ``score`` and a fresh ``rank``."""
        docs = candidate_vectors(inp, self._vectors, who="StoredVectorScorer")
        if docs is None:
            return with_scores(inp, np.empty(0, dtype=np.float32))
        first_stage = anchor_inputs(inp, self.anchoring, who="StoredVectorScorer")
        queries = np.stack(encode_column(inp["query"], self.encoder.encode_queries, self.verbose))
        scores = np.einsum("ij,ij->i", queries, docs)
        return with_scores(inp, apply_anchor(self.anchoring, inp, first_stage, scores))
