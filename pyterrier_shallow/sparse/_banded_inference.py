"""A whole layer for document tokens under windowed attention, in place and in chunks, for inference.

Keys and values are projected once into buffers with ``window`` spare rows at each end; the band of keys around
each block of ``block`` document tokens is then a strided view of that buffer (no copy). Each chunk of blocks runs
its query projection, attention, output projection and feed-forward block, and overwrites its own rows of the
states. Peak memory stays near three copies of the hidden states (states, keys, values) whatever the window and the
length, where a dense layer holds the states, queries, keys, values, context and the feed-forward activations at
once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def padded_projection(linear: nn.Linear, states: torch.Tensor, window: int) -> torch.Tensor:
    """``linear(states)`` flattened to rows, with ``window`` extra rows of zeros before and after.

    Args:
        linear: A key or value projection.
        states: ``(batch, length, hidden)``.
        window: Spare rows at each end.

    Returns:
        ``(window + batch * length + window, hidden)``.
    """
    rows = states.reshape(-1, states.shape[-1])
    out = rows.new_empty(rows.shape[0] + 2 * window, linear.out_features)
    middle = out[window : window + rows.shape[0]]
    if linear.bias is None:
        torch.mm(rows, linear.weight.t(), out=middle)
    else:
        torch.addmm(linear.bias, rows, linear.weight.t(), out=middle)
    out[:window] = 0
    out[window + rows.shape[0] :] = 0
    return out


def heads_of(buffer: torch.Tensor, batch: int, heads: int, window: int) -> torch.Tensor:
    """The rows of a :func:`padded_projection` buffer as ``(batch, heads, length, head_dim)`` (a view)."""
    rows = buffer[window : buffer.shape[0] - window]
    return rows.view(batch, -1, heads, rows.shape[1] // heads).transpose(1, 2)


def banded_layer_(
    layer: nn.Module,
    states: torch.Tensor,
    key_buffer: torch.Tensor,
    value_buffer: torch.Tensor,
    global_keys: torch.Tensor | None,
    global_values: torch.Tensor | None,
    bias: torch.Tensor,
    *,
    heads: int,
    window: int,
    block: int,
    chunk: int,
) -> None:
    """Runs ``layer`` over the document ``states`` in place, each token attending to globals and its window.

    Args:
        layer: A ``BertLayer``-like module.
        states: ``(batch, length, hidden)`` document states, ``length`` a multiple of ``block``; overwritten.
        key_buffer: ``padded_projection(layer's key, states, window)``.
        value_buffer: Likewise for values.
        global_keys: ``(batch, heads, globals, head_dim)`` keys every document token may see, or ``None``.
        global_values: Their values.
        bias: From ``window_bias`` with the same ``window`` and ``block``.
        heads: Attention heads.
        window: Keys at most this many positions away on either side (at most ``block``).
        block: The block length.
        chunk: About how many tokens to process at once.
    """
    batch, length, hidden = states.shape
    blocks_per_doc, head_dim = length // block, hidden // heads
    items = states.view(batch * blocks_per_doc, block, hidden)
    width = block + 2 * window
    per_chunk = max(1, chunk // block)
    query_projection = layer.attention.self.query
    for first in range(0, items.shape[0], per_chunk):
        rows = items[first : first + per_chunk]
        count = rows.shape[0]
        query = query_projection(rows).view(count, block, heads, head_dim).transpose(1, 2)
        keys, values = (
            _band(buffer, first, count, width=width, block=block, heads=heads) for buffer in (key_buffer, value_buffer)
        )
        if global_keys is not None:
            pair = torch.arange(first, first + count, device=states.device) // blocks_per_doc
            keys = torch.cat([global_keys[pair], keys], dim=2)
            values = torch.cat([global_values[pair], values], dim=2)
        context = F.scaled_dot_product_attention(query, keys, values, attn_mask=bias[first : first + count])
        context = context.transpose(1, 2).reshape(count, block, hidden)
        attended = layer.attention.output(context, rows)
        rows.copy_(layer.output(layer.intermediate(attended), attended))


def _band(buffer: torch.Tensor, first: int, count: int, *, width: int, block: int, heads: int) -> torch.Tensor:
    """The ``width`` rows starting at each of ``count`` blocks from block ``first``: ``(count, heads, width, dim)``."""
    hidden = buffer.shape[1]
    band = buffer.as_strided(
        (count, width, heads, hidden // heads),
        (block * hidden, hidden, hidden // heads, 1),
        buffer.storage_offset() + first * block * hidden,
    )
    return band.transpose(1, 2)
