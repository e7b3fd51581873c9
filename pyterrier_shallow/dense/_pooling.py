"""Pooling token vectors into one vector per text."""

from __future__ import annotations

import torch

POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len", "weighted_mean", "last")
"""The pooling modes a :class:`~pyterrier_shallow.dense.BiEncoder` supports."""


def check_pooling(mode: str) -> str:
    """Returns ``mode`` when it is a supported pooling mode, else raises a ``ValueError`` listing them."""
    if mode not in POOLING_MODES:
        raise ValueError(f"unknown pooling {mode!r}; choose one of {list(POOLING_MODES)}")
    return mode


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pools the token vectors of right-padded sequences.

    Args:
        hidden: Token vectors, shape ``(batch, length, dim)``.
        mask: The attention mask, shape ``(batch, length)``: 1 for tokens, 0 for padding.
        mode: One of :data:`POOLING_MODES`.

    Returns:
        One vector per sequence, shape ``(batch, dim)``, in the dtype of ``hidden``.
    """
    if mode == "cls":
        return hidden[:, 0]
    if mode == "last":
        last = mask.sum(dim=1).clamp(min=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    if mode == "weighted_mean":
        positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype)
        weights = weights * positions.view(1, -1, 1)
    total = (hidden * weights).sum(dim=1)
    count = weights.sum(dim=1).clamp(min=1e-9)
    if mode == "mean_sqrt_len":
        return total / count.sqrt()
    return total / count
