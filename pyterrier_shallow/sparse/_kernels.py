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


def segment_attention(query: torch.Tensor, segments: Sequence[Segment], *, dropout: float = 0.0) -> torch.Tensor:
    """Attention of ``query`` over the concatenated keys of ``segments`` (each key seen by every query row).

    The mask is a key mask broadcast over the rows, so memory stays linear in the number of keys for short ``query``
    blocks ([CLS], the query); over a whole document it is the dense path.
    """
    keys = torch.cat([keys for keys, _, _ in segments], dim=2) if len(segments) > 1 else segments[0][0]
    values = torch.cat([values for _, values, _ in segments], dim=2) if len(segments) > 1 else segments[0][1]
    mask = None
    if any(segment_mask is not None for _, _, segment_mask in segments):
        parts = [
            segment_mask if segment_mask is not None else keys.new_ones(keys.shape[0], k.shape[2], dtype=torch.bool)
            for k, _, segment_mask in segments
        ]
        mask = torch.cat(parts, dim=1)[:, None, None, :]
    return F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, dropout_p=dropout)


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
        value elsewhere (rows with nothing to attend to average their keys instead of turning into NaN).
    """
    batch, length = doc_mask.shape
    if length % block:
        raise ValueError(f"document length {length} is not a multiple of the block length {block}")
    width = block + 2 * window
    row = torch.arange(block, device=doc_mask.device)[:, None]
    column = torch.arange(width, device=doc_mask.device)[None, :]
    in_band = (column >= row) & (column <= row + 2 * window)
    key_mask = F.pad(doc_mask, (window, window)).unfold(1, width, block)
    allowed = in_band & key_mask[:, :, None, :]
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
