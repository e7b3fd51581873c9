"""A gated cross-encoder cut where the document starts to read the query: what is stored, and what runs per query.

Below the first layer that reads the query (the split layer ``s``) the document's states depend on the document
alone. In layer ``s`` itself the document's self-attention does not depend on the query either, only the gated
reading of it does::

    attended = LayerNorm(W_o (self_context + gate * to_query) + b_o + x)
             = LayerNorm(residual + W_o (gate * to_query) + b_o),   residual = W_o self_context + x

so each document token stores ``residual`` and its attention query ``W_q x + b_q`` (the keys and values of the
query come from the query). Per candidate, a reranker then runs one softmax over the query's keys, the output
projection and the feed-forward block of layer ``s``, and the layers above it, whose tokens are laid out flat (no
padding) in layer ``s``.
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
    heads = model.config.num_attention_heads
    layer = model.bert.encoder.layer[split]
    gates = model.open_gates()
    keys = queries.keys[split][query_row : query_row + 1]
    values = queries.values[split][query_row : query_row + 1]
    query_mask = queries.mask[query_row : query_row + 1][:, None, None, :]
    reading = F.scaled_dot_product_attention(split_heads(doc_queries[None], heads), keys, values,
                                             attn_mask=query_mask)
    gated = merge_heads(reading * gates[split].to(reading.dtype)[None, :, None, None])[0]
    attended = layer.attention.output(gated, residual)
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


def _unflatten(flat: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens, hidden)`` laid out as ``(documents, longest, hidden)`` states and a boolean mask."""
    width = int(lengths.max())
    mask = torch.arange(width)[None, :] < lengths[:, None]
    states = flat.new_zeros(len(lengths), width, flat.shape[-1])
    states[mask] = flat
    return states, mask
