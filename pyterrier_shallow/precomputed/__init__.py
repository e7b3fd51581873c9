"""Precomputed document states: a gated cross-encoder that runs, per candidate, only the layers that read the query.

A gated cross-encoder whose lower layers do not read the query (``cross_layers``) encodes every document the same way
up to its first reading layer. :class:`DocStateIndex` stores what that layer needs of each document token, once;
:class:`PrecomputedCrossEncoder` (``index.reranker()``) reads it and runs the rest, scoring as the full model.
"""

from typing import TYPE_CHECKING

from pyterrier_shallow._lazy import lazy_exports

_EXPORTS = {
    "AFTER_POLY_ENCODER": ".cascade:AFTER_POLY_ENCODER",
    "DocStateIndex": ".index:DocStateIndex",
    "PRECOMPUTED_MODEL_DIR": "pyterrier_shallow._hf:PRECOMPUTED_CROSS_ENCODER_DIR",
    "PrecomputedCrossEncoder": ".reranker:PrecomputedCrossEncoder",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from pyterrier_shallow._hf import PRECOMPUTED_CROSS_ENCODER_DIR as PRECOMPUTED_MODEL_DIR
    from pyterrier_shallow.precomputed.cascade import AFTER_POLY_ENCODER
    from pyterrier_shallow.precomputed.index import DocStateIndex
    from pyterrier_shallow.precomputed.reranker import PrecomputedCrossEncoder

__all__ = ["AFTER_POLY_ENCODER", "DocStateIndex", "PRECOMPUTED_MODEL_DIR", "PrecomputedCrossEncoder"]
