"""The windowed attention of document tokens through ``torch.nn.attention.flex_attention`` and a block mask.

FlexAttention skips the blocks of the score matrix that its block mask marks empty; it is fast only when compiled
(``torch.compile``, which on the CPU needs a C++ compiler), and it compiles again for each new input shape.
"""

from __future__ import annotations

import functools

import torch


@functools.cache
def _compiled_flex_attention():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def flex_block_mask(global_mask: torch.Tensor | None, doc_mask: torch.Tensor, *, window: int | None):
    """The block mask of document rows over ``globals + document`` keys, built once per batch.

    Args:
        global_mask: ``(batch, globals)`` booleans of the global keys, or ``None`` for none.
        doc_mask: ``(batch, doc_length)`` booleans of the real document tokens.
        window: Document keys at most this many positions away on either side (``None``: all of them).
    """
    from torch.nn.attention.flex_attention import create_block_mask

    batch, length = doc_mask.shape
    globals_ = 0 if global_mask is None else global_mask.shape[1]
    reach = length if window is None else window

    def mask_mod(b, h, q_idx, kv_idx):
        doc_index = (kv_idx - globals_).clamp(min=0)
        in_doc = (kv_idx >= globals_) & doc_mask[b, doc_index] & ((doc_index - q_idx).abs() <= reach)
        if not globals_:
            return in_doc
        in_globals = (kv_idx < globals_) & global_mask[b, kv_idx.clamp(max=globals_ - 1)]
        return in_globals | in_doc

    return create_block_mask(mask_mod, batch, None, length, globals_ + length, device=doc_mask.device)


def flex_windowed_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    global_keys: torch.Tensor | None,
    global_values: torch.Tensor | None,
    block_mask,
) -> torch.Tensor:
    """Document rows over the global keys and their window, skipping empty blocks; shapes as in ``_kernels``."""
    if global_keys is not None:
        keys = torch.cat([global_keys, keys], dim=2)
        values = torch.cat([global_values, values], dim=2)
    return _compiled_flex_attention()(query, keys, values, block_mask=block_mask)
