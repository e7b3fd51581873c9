"""Length-sorted, token-budget batching shared by every encoder."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def length_sorted_batches(
    lengths: Sequence[int] | np.ndarray,
    *,
    batch_size: int,
    token_budget: int | None = None,
) -> list[np.ndarray]:
    """Groups item indices into batches of similar length so that padding is small.

    Items are sorted by length (longest first, so that an out-of-memory error shows up on the first batch, not the
    last) and cut into consecutive batches. A batch holds at most ``batch_size`` items and, when ``token_budget`` is
    given, at most ``token_budget`` tokens once padded to its longest item (a single over-long item still forms a
    batch of its own).

    Args:
        lengths: The length in tokens of each item.
        batch_size: The most items in one batch.
        token_budget: The most padded tokens in one batch (``None`` for no limit).

    Returns:
        The batches, each an array of indices into ``lengths``; together they cover every index exactly once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if token_budget is not None and token_budget < 1:
        raise ValueError(f"token_budget must be at least 1, got {token_budget}")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])
        size = batch_size
        if token_budget is not None:
            size = max(1, min(batch_size, token_budget // max(longest, 1)))
        batches.append(order[start : start + size])
        start += size
    return batches
