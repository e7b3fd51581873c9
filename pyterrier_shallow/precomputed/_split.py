"""A gated cross-encoder cut where the document starts to read the query: what is stored, and what runs per query.

Below the first layer that reads the query (the split layer ``s``) the document's states depend on the document
alone. In layer ``s`` itself the document's self-attention does not depend on the query either, only the gated
reading of it does::

    attended = LayerNorm(W_o (self_context + gate * to_query) + b_o + x)
             = LayerNorm(residual + W_o (gate * to_query) + b_o),   residual = W_o self_context + x

so each document token stores ``residual`` and its attention query ``W_q x + b_q`` (the keys and values of the
query come from the query). Per candidate, a reranker then runs one softmax over the query's keys, the output
projection (folded into the query's values for a short query, :func:`read_query`) and the feed-forward block of
layer ``s``, and the layers above it, whose tokens are laid out flat (no padding) in layer ``s``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pyterrier_shallow.gated.model import EncodedQueries, GatedBertRanker, doc_self_mask
from pyterrier_shallow.sparse._backbone import merge_heads, project, split_heads
from pyterrier_shallow.sparse._segments import DocTokens


def split_layer(model: GatedBertRanker) -> int:
    """The layer whose inputs an index stores: the first that reads the query (the last one if none does yet)."""
    if model.config.query_gates and bool(torch.tanh(model.query_gates).detach().abs().max() > 0):
        raise ValueError("a symmetric gated model whose query reads the document cannot use precomputed document "
                         "states (its query states depend on each candidate)")
    return min(model.first_query_layer(), model.config.num_hidden_layers - 1)


@torch.inference_mode()
def document_states(model: GatedBertRanker, docs: DocTokens, split: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What a document's tokens keep for layer ``split``: its ``residual`` and attention ``queries``.

    Args:
        model: The gated cross-encoder (in eval mode; its layers below ``split`` must not read the query).
        docs: Documents (their ``pair_query`` is ignored), padded.
        split: The split layer.

    Returns:
        Two ``(real tokens, hidden)`` float32 tensors, the documents' real tokens ([CLS] first) one after another.
    """
    states, mask, self_mask = model.embed_docs(docs)
    for index in range(split):
        states = model.doc_layer(index, states, self_mask, None, docs.pair_query, None)
    layer = model.bert.encoder.layer[split]
    heads = model.config.num_attention_heads
    attention = layer.attention.self
    query = project(attention.query, states, heads)
    context = F.scaled_dot_product_attention(query, project(attention.key, states, heads),
                                             project(attention.value, states, heads), attn_mask=self_mask)
    residual = F.linear(merge_heads(context), layer.attention.output.dense.weight) + states
    real = mask.bool()
    return residual[real], merge_heads(query)[real]


@torch.inference_mode()
def rerank_states(model: GatedBertRanker, residual: torch.Tensor, doc_queries: torch.Tensor, lengths: torch.Tensor,
                  queries: EncodedQueries, query_row: int, split: int) -> torch.Tensor:
    """The logits ``(documents,)`` of one query against documents given by their stored states.

    Args:
        model: The gated cross-encoder whose lower layers made the states.
        residual: ``(tokens, hidden)`` the documents' stored residuals, one document after another.
        doc_queries: ``(tokens, hidden)`` their stored attention queries.
        lengths: ``(documents,)`` tokens a document ([CLS] included), summing to ``tokens``.
        queries: Encoded queries (:meth:`GatedBertRanker.encode_queries`).
        query_row: The row of the query in ``queries``.
        split: The layer the states enter.
    """
    layer = model.bert.encoder.layer[split]
    gates = model.open_gates()
    real = queries.mask[query_row].bool()  # the query's own tokens, without the batch's padding
    keys = queries.keys[split][query_row][:, real]
    values = queries.values[split][query_row][:, real]
    attended = read_query(layer, doc_queries, keys, values, gates[split], residual)
    flat = layer.output(layer.intermediate(attended), attended)
    states, mask = _unflatten(flat, lengths)
    pair_query = torch.full((len(lengths),), query_row, dtype=torch.long)
    if split + 1 < model.config.num_hidden_layers:
        self_mask = doc_self_mask(mask, model.config.doc_window)
        reads = gates.detach().abs().amax(dim=1) > 0
        for index in range(split + 1, model.config.num_hidden_layers):
            gate = gates[index] if bool(reads[index]) else None
            states = model.doc_layer(index, states, self_mask, queries, pair_query, gate)
    return model.pair_scores(states, mask, queries, pair_query)


def read_query(layer, doc_queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, gate: torch.Tensor,
               residual: torch.Tensor) -> torch.Tensor:
    """Layer ``s``'s attention output for document tokens reading one query.

    That is ``LayerNorm(residual + W_o (gate * to_query) + b_o)``. Each token's reading mixes the query's values,
    so for a short query the output projection is applied once per query token instead of once per document token:
    ``W_o (gate * to_query) = sum_h,j p_hj (gate_h W_o^h v_hj)``.
    The attention weights of all heads then come from one matrix product with the query's keys laid out block by
    block, ``(tokens, hidden) @ (hidden, heads * query tokens)``, and the output from a second with the projected
    values, ``(heads * query tokens, hidden)``: two dense products in place of a per-head one and a ``hidden``-square
    projection. For longer queries (above two thirds of ``hidden`` in ``heads * query tokens``, where this stops
    paying on a CPU) attention runs per head and is projected after. Both give the same scores up to rounding.

    Args:
        layer: The split layer (a BERT layer).
        doc_queries: ``(tokens, hidden)`` the document tokens' attention queries.
        keys: ``(heads, query tokens, head_dim)`` the query's keys in that layer (its real tokens only).
        values: ``(heads, query tokens, head_dim)`` its values.
        gate: ``(heads,)`` how much each head reads the query.
        residual: ``(tokens, hidden)`` the tokens' stored residuals.
    """
    output = layer.attention.output
    heads, query_tokens, head_dim = keys.shape
    hidden = heads * head_dim
    gated = values * gate.to(values.dtype)[:, None, None]
    if 3 * heads * query_tokens > 2 * hidden:
        reading = F.scaled_dot_product_attention(split_heads(doc_queries[None], heads), keys[None], gated[None])
        return output(merge_heads(reading)[0], residual)
    block_keys = keys.new_zeros(heads, head_dim, heads, query_tokens)
    every = torch.arange(heads)
    block_keys[every, :, every, :] = keys.transpose(1, 2) * head_dim**-0.5
    scores = doc_queries @ block_keys.view(hidden, heads * query_tokens)
    weights = scores.view(-1, heads, query_tokens).softmax(dim=-1).view(-1, heads * query_tokens)
    weight, bias = _linear_weights(output.dense)
    per_head = weight.view(weight.shape[0], heads, head_dim).permute(1, 2, 0)  # (heads, head_dim, hidden)
    projected = torch.bmm(gated, per_head).reshape(heads * query_tokens, hidden)
    mixed = torch.addmm(bias, weights, projected) if bias is not None else weights @ projected
    return output.LayerNorm(mixed + residual)


def _linear_weights(linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A Linear layer's float weight and bias, dequantised when the layer is int8 (``torch.ao`` dynamic)."""
    weight, bias = linear.weight, linear.bias
    weight = weight() if callable(weight) else weight
    bias = bias() if callable(bias) else bias
    return (weight.dequantize() if weight.is_quantized else weight), bias


def _unflatten(flat: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens, hidden)`` laid out as ``(documents, longest, hidden)`` states and a boolean mask."""
    width = int(lengths.max())
    mask = torch.arange(width)[None, :] < lengths[:, None]
    states = flat.new_zeros(len(lengths), width, flat.shape[-1])
    states[mask] = flat
    return states, mask
