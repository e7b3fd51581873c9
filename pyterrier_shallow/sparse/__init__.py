"""Sparse-attention cross-encoders: attention patterns, windowed kernels and the SparseCrossEncoder reranker."""

from pyterrier_shallow.sparse.cross_encoder import SparseCrossEncoder
from pyterrier_shallow.sparse.model import QueryStates, SparseCrossEncoderModel
from pyterrier_shallow.sparse.pattern import AttentionPattern
from pyterrier_shallow.sparse.positions import extend_position_embeddings

__all__ = [
    "AttentionPattern",
    "QueryStates",
    "SparseCrossEncoder",
    "SparseCrossEncoderModel",
    "extend_position_embeddings",
]
