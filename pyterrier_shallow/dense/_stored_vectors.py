"""Reading the vectors a FAISS index stores back by docno."""

from __future__ import annotations

import faiss
import numpy as np
import pandas as pd

from pyterrier_shallow._frames import require_columns, require_str_ids, require_texts


def reconstruct(index: faiss.Index, ids: np.ndarray) -> np.ndarray:
    """Reads stored vectors back from a FAISS index (building an IVF index's direct map on first use)."""
    unique, inverse = np.unique(ids, return_inverse=True)
    try:
        vectors = index.reconstruct_batch(unique)
    except RuntimeError:
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is None:
            raise
        ivf.make_direct_map()
        vectors = index.reconstruct_batch(unique)
    return np.asarray(vectors, dtype=np.float32)[inverse]


def candidate_vectors(inp: pd.DataFrame, vectors_of, *, who: str) -> np.ndarray | None:
    """Checks candidates to be scored with stored vectors and returns those vectors (``None`` for an empty frame).

    Args:
        inp: ``qid, query, docno`` rows.
        vectors_of: Returns the stored vectors of a list of docnos (e.g. ``FaissIndex.vectors``).
        who: Names the caller in errors.
    """
    require_columns(inp, ["qid", "query", "docno"], who=who)
    if len(inp) == 0:
        return None
    require_str_ids(inp, who=who)
    require_texts(inp, "query", who=who, allow_empty=False)
    return vectors_of(inp["docno"].tolist())
