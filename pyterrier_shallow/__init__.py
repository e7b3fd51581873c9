"""pyterrier-shallow: fast multi-stage retrieval for PyTerrier under a latency budget.

Names load on first use (``pts.CrossEncoder`` imports torch and transformers, ``pts.train`` the training loop), so
that importing the package, and the command line's ``--help``, stay fast.
"""

from typing import TYPE_CHECKING

from pyterrier_shallow._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Anchor": ".anchor:Anchor",
    "AttentionPattern": ".sparse.pattern:AttentionPattern",
    "BiEncoder": ".dense.bi_encoder:BiEncoder",
    "CrossEncoder": ".cross_encoder:CrossEncoder",
    "DocStateIndex": ".precomputed.index:DocStateIndex",
    "FaissIndex": ".dense.faiss_index:FaissIndex",
    "PolyEncoder": ".poly.poly_encoder:PolyEncoder",
    "PrecomputedCrossEncoder": ".precomputed.reranker:PrecomputedCrossEncoder",
    "ScoreFusion": ".dense.fusion:ScoreFusion",
    "ScoringStats": ".cross_encoder:ScoringStats",
    "SparseCrossEncoder": ".sparse.cross_encoder:SparseCrossEncoder",
    "TextLoader": ".text_loader:TextLoader",
    "bm25_index": ".bm25:bm25_index",
    **{package: f".{package}" for package in ("anchor", "budget", "datasets", "dense", "gated", "poly",
                                              "precomputed", "sparse", "train")},
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from pyterrier_shallow import anchor, budget, datasets, dense, gated, poly, precomputed, sparse, train
    from pyterrier_shallow.anchor import Anchor
    from pyterrier_shallow.bm25 import bm25_index
    from pyterrier_shallow.cross_encoder import CrossEncoder, ScoringStats
    from pyterrier_shallow.dense import BiEncoder, FaissIndex, ScoreFusion
    from pyterrier_shallow.poly import PolyEncoder
    from pyterrier_shallow.precomputed import DocStateIndex, PrecomputedCrossEncoder
    from pyterrier_shallow.sparse import AttentionPattern, SparseCrossEncoder
    from pyterrier_shallow.text_loader import TextLoader

__all__ = [
    "Anchor",
    "AttentionPattern",
    "BiEncoder",
    "CrossEncoder",
    "DocStateIndex",
    "FaissIndex",
    "PolyEncoder",
    "PrecomputedCrossEncoder",
    "ScoreFusion",
    "ScoringStats",
    "SparseCrossEncoder",
    "TextLoader",
    "__version__",
    "anchor",
    "bm25_index",
    "budget",
    "datasets",
    "dense",
    "gated",
    "poly",
    "precomputed",
    "sparse",
    "train",
]
