"""pyterrier-shallow: fast multi-stage retrieval for PyTerrier under a latency budget."""

import importlib

from pyterrier_shallow import datasets
from pyterrier_shallow.bm25 import bm25_index
from pyterrier_shallow.cross_encoder import CrossEncoder, ScoringStats
from pyterrier_shallow.dense import BiEncoder, FaissIndex, ScoreFusion
from pyterrier_shallow.poly import PolyEncoder
from pyterrier_shallow.sparse import AttentionPattern, SparseCrossEncoder
from pyterrier_shallow.text_loader import TextLoader

__version__ = "0.1.0"


def __getattr__(name: str):
    """Imports the training package on first use (``pyterrier_shallow.train``): inference never loads it."""
    if name == "train":
        return importlib.import_module("pyterrier_shallow.train")
    raise AttributeError(f"module 'pyterrier_shallow' has no attribute {name!r}")


__all__ = [
    "AttentionPattern",
    "BiEncoder",
    "CrossEncoder",
    "FaissIndex",
    "PolyEncoder",
    "ScoreFusion",
    "ScoringStats",
    "SparseCrossEncoder",
    "TextLoader",
    "__version__",
    "bm25_index",
    "datasets",
    "train",
]
