"""The modules of a BERT-family sequence classifier, and the pieces of its forward pass around attention.

Embeddings, one layer's projections and feed-forward block, and the head are those of the Hugging Face model, so
that a custom attention can sit between them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

_SUPPORTED = ("bert", "electra")


@dataclass
class Backbone:
    """The modules of a Hugging Face ``BertForSequenceClassification`` or ``ElectraForSequenceClassification``.

    Attributes:
        embeddings: Word, position and token type embeddings with their LayerNorm and dropout.
        projection: ELECTRA's projection of small embeddings to the hidden size, else ``None``.
        layers: The transformer layers (self-attention projections, output dense + LayerNorm, feed-forward).
        head: Maps the final [CLS] states ``(batch, 1, hidden)`` to logits ``(batch, labels)``.
        num_heads: Attention heads per layer.
        attention_dropout: Dropout on attention probabilities while training.
    """

    embeddings: nn.Module
    projection: nn.Module | None
    layers: nn.ModuleList
    head: Callable[[torch.Tensor], torch.Tensor]
    num_heads: int
    attention_dropout: float


def backbone_of(model: nn.Module) -> Backbone:
    """Finds the modules of ``model``, a BERT or ELECTRA sequence classifier with absolute positions."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in _SUPPORTED or not hasattr(model, "classifier"):
        raise TypeError(
            f"sparse attention needs a BERT-family sequence classifier ({', '.join(_SUPPORTED)}); "
            f"got {type(model).__name__} (model_type={model_type!r})"
        )
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"only absolute position embeddings are supported, not {config.position_embedding_type!r}")
    if getattr(config, "is_decoder", False):
        raise ValueError("sparse attention applies to encoders, but this model is configured as a decoder")
    if model_type == "bert":
        encoder = model.bert

        def head(cls_states: torch.Tensor) -> torch.Tensor:
            return model.classifier(model.dropout(encoder.pooler(cls_states)))

        projection = None
    else:
        encoder = model.electra
        head = model.classifier
        projection = getattr(encoder, "embeddings_project", None)
    return Backbone(
        embeddings=encoder.embeddings,
        projection=projection,
        layers=encoder.encoder.layer,
        head=head,
        num_heads=config.num_attention_heads,
        attention_dropout=config.attention_probs_dropout_prob,
    )


def embed(backbone: Backbone, ids: torch.Tensor, types: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The input states of tokens given their ids, token types and absolute positions."""
    embeddings = backbone.embeddings
    states = embeddings.word_embeddings(ids)
    states += embeddings.token_type_embeddings(types)
    states += embeddings.position_embeddings(positions)
    states = embeddings.dropout(embeddings.LayerNorm(states))
    return states if backbone.projection is None else backbone.projection(states)


def split_heads(states: torch.Tensor, heads: int) -> torch.Tensor:
    """``(batch, length, hidden)`` to ``(batch, heads, length, head_dim)``."""
    batch, length, hidden = states.shape
    return states.view(batch, length, heads, hidden // heads).transpose(1, 2)


def merge_heads(states: torch.Tensor) -> torch.Tensor:
    """``(batch, heads, length, head_dim)`` to ``(batch, length, hidden)``."""
    batch, heads, length, head_dim = states.shape
    return states.transpose(1, 2).reshape(batch, length, heads * head_dim)


def project(linear: nn.Linear, states: torch.Tensor, heads: int) -> torch.Tensor:
    """A query, key or value projection of ``states``, split into heads."""
    return split_heads(linear(states), heads)


def finish_layer(layer: nn.Module, states: torch.Tensor, context: torch.Tensor, *, chunk: int | None) -> torch.Tensor:
    """The rest of a layer after attention: output dense, residual and LayerNorm, then the feed-forward block.

    Args:
        layer: A ``BertLayer``-like module.
        states: The layer's input states ``(batch, length, hidden)``.
        context: The attention output ``(batch, heads, length, head_dim)``.
        chunk: Without gradients, run the feed-forward block on at most this many tokens at a time, so that its
            4x wide intermediate never holds the whole batch (``None``: all at once).
    """
    attended = layer.attention.output(merge_heads(context), states)
    if chunk is None or torch.is_grad_enabled() or attended.shape[0] * attended.shape[1] <= chunk:
        return layer.output(layer.intermediate(attended), attended)
    flat = attended.reshape(-1, attended.shape[-1])
    out = torch.empty_like(flat)
    for start in range(0, flat.shape[0], chunk):
        rows = flat[start : start + chunk]
        out[start : start + chunk] = layer.output(layer.intermediate(rows), rows)
    return out.view_as(attended)
