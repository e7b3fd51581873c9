"""Poly-encoders: precomputed document vectors scored by learned codes that attend over the query's tokens."""

import importlib

from pyterrier_shallow.poly.codes import CODE_COUNTS, PolyCodes
from pyterrier_shallow.poly.poly_encoder import DEFAULT_POLY_ENCODER_DIR, PolyEncoder

_TRAINING = ("FrozenEncodings", "PolyTrainConfig", "train_codes")


def __getattr__(name: str):
    """The training names load the training loop on first use only: inference never imports it."""
    if name in _TRAINING:
        return getattr(importlib.import_module("pyterrier_shallow.poly.train"), name)
    raise AttributeError(f"module 'pyterrier_shallow.poly' has no attribute {name!r}")


__all__ = [
    "CODE_COUNTS",
    "DEFAULT_POLY_ENCODER_DIR",
    "FrozenEncodings",
    "PolyCodes",
    "PolyEncoder",
    "PolyTrainConfig",
    "train_codes",
]
