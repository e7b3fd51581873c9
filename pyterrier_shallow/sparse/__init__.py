"""Sparse-attention cross-encoders: attention patterns, windowed kernels and the SparseCrossEncoder reranker."""

from typing import TYPE_CHECKING

from pyterrier_shallow._lazy import lazy_exports

_EXPORTS = {
    "AttentionPattern": ".pattern:AttentionPattern",
    "QueryStates": ".model:QueryStates",
    "SparseCrossEncoder": ".cross_encoder:SparseCrossEncoder",
    "SparseCrossEncoderModel": ".model:SparseCrossEncoderModel",
    "extend_position_embeddings": ".positions:extend_position_embeddings",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
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
