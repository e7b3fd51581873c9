"""Gated cross-encoders: cross-encoders that begin as their bi-encoder and learn to read the query."""

from typing import TYPE_CHECKING

from pyterrier_shallow._lazy import lazy_exports

_EXPORTS = {
    "DEEP_MODEL_DIR": "pyterrier_shallow._hf:DEEP_CROSS_ENCODER_DIR",
    "GatedBertConfig": ".model:GatedBertConfig",
    "GatedBertRanker": ".model:GatedBertRanker",
    "SHALLOW_MODEL_DIR": "pyterrier_shallow._hf:SHALLOW_CROSS_ENCODER_DIR",
    "gated_from_bi_encoder": ".build:gated_from_bi_encoder",
    "idf_term_weights": ".term_weights:idf_term_weights",
    "init_gated_cross_encoder": ".build:init_gated_cross_encoder",
    "interpolate_from_warm_start": ".interpolate:interpolate_from_warm_start",
    "interpolate_weights": ".interpolate:interpolate_weights",
    "is_delta": ".build:is_delta",
    "load_delta": ".build:load_delta",
    "load_gated": ".build:load_gated",
    "register_auto_classes": ".build:register_auto_classes",
    "save_delta": ".build:save_delta",
    "ship_checkpoint": ".build:ship_checkpoint",
    "use_corpus_term_weights": ".term_weights:use_corpus_term_weights",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from pyterrier_shallow._hf import DEEP_CROSS_ENCODER_DIR as DEEP_MODEL_DIR
    from pyterrier_shallow._hf import SHALLOW_CROSS_ENCODER_DIR as SHALLOW_MODEL_DIR
    from pyterrier_shallow.gated.build import (
        gated_from_bi_encoder,
        init_gated_cross_encoder,
        is_delta,
        load_delta,
        load_gated,
        register_auto_classes,
        save_delta,
        ship_checkpoint,
    )
    from pyterrier_shallow.gated.interpolate import interpolate_from_warm_start, interpolate_weights
    from pyterrier_shallow.gated.model import GatedBertConfig, GatedBertRanker
    from pyterrier_shallow.gated.term_weights import idf_term_weights, use_corpus_term_weights

__all__ = [
    "DEEP_MODEL_DIR",
    "GatedBertConfig",
    "GatedBertRanker",
    "SHALLOW_MODEL_DIR",
    "gated_from_bi_encoder",
    "idf_term_weights",
    "init_gated_cross_encoder",
    "interpolate_from_warm_start",
    "interpolate_weights",
    "is_delta",
    "load_delta",
    "load_gated",
    "register_auto_classes",
    "save_delta",
    "ship_checkpoint",
    "use_corpus_term_weights",
]
