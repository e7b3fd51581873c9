"""Poly-encoders: precomputed document vectors scored by learned codes that attend over the query's tokens."""

from pyterrier_shallow.poly.codes import CODE_COUNTS, PolyCodes
from pyterrier_shallow.poly.poly_encoder import DEFAULT_POLY_ENCODER_DIR, PolyEncoder
from pyterrier_shallow.poly.train import FrozenEncodings, PolyTrainConfig, train_codes

__all__ = [
    "CODE_COUNTS",
    "DEFAULT_POLY_ENCODER_DIR",
    "FrozenEncodings",
    "PolyCodes",
    "PolyEncoder",
    "PolyTrainConfig",
    "train_codes",
]
