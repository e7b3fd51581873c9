"""Poly-encoders: precomputed document vectors scored by learned codes that attend over the query's tokens.

Names load on first use; the training names (``train_codes`` ...) load the training loop, which inference never
imports.
"""

from typing import TYPE_CHECKING

from pyterrier_shallow._lazy import lazy_exports

_EXPORTS = {
    "CODE_COUNTS": ".codes:CODE_COUNTS",
    "DEFAULT_POLY_ENCODER_DIR": ".poly_encoder:DEFAULT_POLY_ENCODER_DIR",
    "FrozenEncodings": ".train:FrozenEncodings",
    "PolyCodes": ".codes:PolyCodes",
    "PolyEncoder": ".poly_encoder:PolyEncoder",
    "PolyTrainConfig": ".train:PolyTrainConfig",
    "train_codes": ".train:train_codes",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
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
