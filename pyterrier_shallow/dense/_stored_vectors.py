"""Reading the vectors a FAISS index stores back by docno."""

from __future__ import annotations

import faiss
import numpy as np


def docno_positions(docnos: np.ndarray) -> dict[str, int]:
    """Maps each docno (bytes or str, in index order) to its position in the index."""
    return {docno.decode() if isinstance(docno, bytes) else str(docno): position
            for position, docno in enumerate(docnos.tolist())}


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
