"""Gated cross-encoders: cross-encoders that begin as their bi-encoder and learn to read the query."""

from pyterrier_shallow.gated.build import (
    gated_from_bi_encoder,
    init_gated_cross_encoder,
    is_delta,
    load_delta,
    register_auto_classes,
    save_delta,
    ship_checkpoint,
)
from pyterrier_shallow.gated.model import GatedBertConfig, GatedBertRanker

__all__ = [
    "GatedBertConfig",
    "GatedBertRanker",
    "gated_from_bi_encoder",
    "init_gated_cross_encoder",
    "is_delta",
    "load_delta",
    "register_auto_classes",
    "save_delta",
    "ship_checkpoint",
]
