"""Preparing a fast tokenizer for the pair tokenizer: no fixed padding or truncation, a chosen length limit."""

from __future__ import annotations


def prepare_tokenizer(tokenizer, *, max_length: int):
    """Removes any fixed padding/truncation of the fast tokenizer's backend and sets ``model_max_length``.

    Args:
        tokenizer: A Hugging Face tokenizer (changed in place).
        max_length: The longest input, in tokens, it should allow.

    Returns:
        The same tokenizer.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.no_padding()
        backend.no_truncation()
    for stale in ("max_length", "stride", "truncation_strategy", "pad_to_multiple_of"):
        tokenizer.init_kwargs.pop(stale, None)
    tokenizer.model_max_length = max_length
    return tokenizer
