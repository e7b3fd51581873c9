"""Attention kernels that never build the n x n score matrix: key segments, and a banded window with global keys.

Shapes: queries, keys and values are ``(batch, heads, length, head_dim)``; masks are booleans, true where a key may
be attended to.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

Segment = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
"""``(keys, values, key_mask)``: one group of keys that a query attends to in full; ``key_mask`` is ``(batch, length)``
booleans or ``None`` when every key is real."""


_FEW_ROWS = 64
"""Up to this many query rows, segments are attended to in place, without concatenating their keys and values."""


def segment_attention(query: torch.Tensor, segments: Sequence[Segment], *, dropout: float = 0.0) -> torch.Tensor:
    """Attention of ``query`` over the keys of all ``segments`` at once (one softmax over their union).

    For a few query rows ([CLS], a query) the scores of each segment are computed where its keys lie, so that the
    document's keys and values are never copied; for many rows the segments are concatenated for one fused call.
    """
    masks = [mask for _, _, mask in segments]
    if len(segments) == 1 or query.shape[2] > _FEW_ROWS:
        keys = torch.cat([keys for keys, _, _ in segments], dim=2) if len(segments) > 1 else segments[0][0]
        values = torch.cat([values for _, values, _ in segments], dim=2) if len(segments) > 1 else segments[0][1]
        mask = None
        if any(mask is not None for mask in masks):
            parts = [
                mask if mask is not None else keys.new_ones(keys.shape[0], k.shape[2], dtype=torch.bool)
                for (k, _, _), mask in zip(segments, masks, strict=True)
            ]
            mask = torch.cat(parts, dim=1)[:, None, None, :]
        return F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, dropout_p=dropout)
    scale = query.shape[-1] ** -0.5
    scores = []
    for keys, _, mask in segments:
        segment_scores = _batched_matmul(query, keys.transpose(-1, -2)).mul_(scale)
        if mask is not None:
            segment_scores = segment_scores.masked_fill(~mask[:, None, None, :], torch.finfo(segment_scores.dtype).min)
        scores.append(segment_scores)
    probs = torch.softmax(torch.cat(scores, dim=-1), dim=-1)
    if dropout:
        probs = F.dropout(probs, dropout)
    out, start = None, 0
    for keys, values, _ in segments:
        part = _batched_matmul(probs[..., start : start + keys.shape[2]], values)
        out = part if out is None else out + part
        start += keys.shape[2]
    return out


def _batched_matmul(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``left @ right`` over ``(batch, heads)`` without copying ``right``.

    Keys and values are head views of ``(batch, length, heads, head_dim)`` rows, whose batch and head dims cannot be
    merged; ``torch.matmul`` would then copy all of ``right``, so such products run one batch element at a time.
    """
    if right.shape[0] == 1 or right.stride(0) == right.shape[1] * right.stride(1):
        return torch.matmul(left, right)
    return torch.stack([torch.matmul(left[index], right[index]) for index in range(right.shape[0])])


def block_size_for(window: int, block_size: int | None = None) -> int:
    """The document block length of the banded kernel: ``block_size``, by default 32 or twice the window."""
    return max(block_size or 32, 2 * window if block_size is None else window, 1)


def window_bias(
    global_mask: torch.Tensor | None,
    doc_mask: torch.Tensor,
    *,
    window: int,
    block: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The additive mask of :func:`windowed_attention`, built once per batch and shared by every layer and head.

    Args:
        global_mask: ``(batch, globals)`` booleans of the global keys ([CLS], the query), or ``None`` for none.
        doc_mask: ``(batch, doc_length)`` booleans of the real document tokens; ``doc_length`` is a multiple of
            ``block``.
        window: Keys at most this many positions away on either side.
        block: The block length.
        dtype: The dtype of the scores.

    Returns:
        ``(batch * blocks, 1, block, globals + block + 2 * window)``: 0 where allowed, the dtype's most negative
        value elsewhere. Every row sees at least its own position (padding rows included), so no row is left
        without keys and nothing turns into NaN, whatever the pattern and the dtype.
    """
    batch, length = doc_mask.shape
    if length % block:
        raise ValueError(f"document length {length} is not a multiple of the block length {block}")
    width = block + 2 * window
    row = torch.arange(block, device=doc_mask.device)[:, None]
    column = torch.arange(width, device=doc_mask.device)[None, :]
    in_band = (column >= row) & (column <= row + 2 * window)
    key_mask = F.pad(doc_mask, (window, window)).unfold(1, width, block)
    allowed = (in_band & key_mask[:, :, None, :]) | (column == row + window)  # padding rows see themselves
    blocks = length // block
    if global_mask is not None:
        allowed = torch.cat([global_mask[:, None, None, :].expand(batch, blocks, block, -1), allowed], dim=-1)
    bias = torch.zeros(allowed.shape, dtype=dtype, device=doc_mask.device)
    bias.masked_fill_(~allowed, torch.finfo(dtype).min)
    return bias.view(batch * blocks, 1, block, -1)


def windowed_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    global_keys: torch.Tensor | None,
    global_values: torch.Tensor | None,
    bias: torch.Tensor,
    *,
    window: int,
    block: int,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Document tokens attending to a few global keys and to the document keys within ``window`` on each side.

    The document is cut into blocks of ``block`` tokens; each block attends to the global keys and to the
    ``block + 2 * window`` document keys around it, all blocks of the batch in one fused attention call. Scores take
    ``length * (globals + block + 2 * window)`` entries per head instead of ``length ** 2``.

    Args:
        query: ``(batch, heads, length, head_dim)`` document queries; ``length`` is a multiple of ``block``.
        keys: Document keys, shaped like ``query``.
        values: Document values, shaped like ``query``.
        global_keys: ``(batch, heads, globals, head_dim)`` keys every document token may see, or ``None``.
        global_values: Their values.
        bias: From :func:`window_bias` with the same ``window`` and ``block``.
        window: Keys at most this many positions away on either side (at most ``block``).
        block: The block length.
        dropout: Dropout on the attention probabilities (training).

    Returns:
        ``(batch, heads, length, head_dim)``.
    """
    if window > block:
        raise ValueError(f"window {window} exceeds the block length {block}")
    batch, heads, length, head_dim = query.shape
    blocks = length // block
    block_query = _by_block(query, block).reshape(batch * blocks, heads, block, head_dim)
    band_keys = _blocked_band(keys, global_keys, window=window, block=block)
    band_values = _blocked_band(values, global_values, window=window, block=block)
    out = F.scaled_dot_product_attention(block_query, band_keys, band_values, attn_mask=bias, dropout_p=dropout)
    return (
        out.view(batch, blocks, heads, block, head_dim)
        .transpose(2, 3)
        .reshape(batch, length, heads, head_dim)
        .transpose(1, 2)
    )


def _by_block(rows: torch.Tensor, block: int) -> torch.Tensor:
    """``(batch, heads, length, head_dim)`` as ``(batch, blocks, heads, block, head_dim)``, a view where possible."""
    batch, heads, length, head_dim = rows.shape
    return rows.transpose(1, 2).reshape(batch, length // block, block, heads, head_dim).transpose(2, 3)


def _blocked_band(rows: torch.Tensor, global_rows: torch.Tensor | None, *, window: int, block: int) -> torch.Tensor:
    """Lays out, for each block, the global rows then the block's rows with ``window`` neighbours on each side.

    Returns:
        ``(batch * blocks, heads, globals + block + 2 * window, head_dim)``; neighbours beyond the document are
        zeros.
    """
    batch, heads, length, head_dim = rows.shape
    blocks = length // block
    globals_ = 0 if global_rows is None else global_rows.shape[2]
    by_block = _by_block(rows, block)
    out = rows.new_empty(batch, blocks, heads, globals_ + block + 2 * window, head_dim)
    if globals_:
        out[:, :, :, :globals_] = global_rows[:, None]
    start = globals_ + window
    out[:, :, :, start : start + block] = by_block
    if window:
        out[:, 1:, :, globals_:start] = by_block[:, :-1, :, block - window :]
        out[:, :1, :, globals_:start] = 0
        out[:, :-1, :, start + block :] = by_block[:, 1:, :, :window]
        out[:, -1:, :, start + block :] = 0
    return out.view(batch * blocks, heads, -1, head_dim)
