"""SparseCrossEncoderModel: a BERT-family sequence classifier run under a sparse attention pattern."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from pyterrier_shallow.sparse._backbone import Backbone, backbone_of, embed, finish_layer, project
from pyterrier_shallow.sparse._banded_inference import banded_layer_, heads_of, padded_projection
from pyterrier_shallow.sparse._flex import flex_block_mask, flex_windowed_attention
from pyterrier_shallow.sparse._kernels import block_size_for, segment_attention, window_bias, windowed_attention
from pyterrier_shallow.sparse._segments import DocTokens, QueryTokens, split_joint_inputs
from pyterrier_shallow.sparse.pattern import AttentionPattern

KERNELS = ("banded", "flex")


@dataclass
class QueryStates:
    """The per-layer keys and values of encoded queries, shared by every pair of each query.

    Attributes:
        keys: One ``(queries, heads, length, head_dim)`` tensor per layer.
        values: Likewise.
        mask: ``(queries, length)``, true on real tokens.
        lengths: ``(queries,)`` tokens of each query, its [SEP] included.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor
    lengths: torch.Tensor


class SparseCrossEncoderModel(nn.Module):
    """A Hugging Face BERT or ELECTRA sequence classifier whose attention follows an :class:`AttentionPattern`.

    The weights are those of ``model`` (shared, not copied); only the attention changes, so any cross-encoder
    checkpoint runs sparse as it is, and training under the pattern updates ``model`` itself. Document tokens attend
    through a kernel that never builds the ``n x n`` score matrix; when the pattern keeps queries to themselves,
    each distinct query is encoded once and its per-layer keys and values serve all its pairs. In the last layer only
    [CLS] is computed, as nothing else reaches the classifier.

    Calling the module like the Hugging Face model (``input_ids``, ``attention_mask``, ``token_type_ids``) returns a
    ``SequenceClassifierOutput`` whose ``logits`` support gradients, so a training loop that calls
    ``model(**inputs).logits`` can train it as it is; the trained weights are those of ``.model``, saved as the
    ordinary Hugging Face checkpoint they are (the pattern is chosen again when loading).

    Args:
        model: A ``BertForSequenceClassification`` or ``ElectraForSequenceClassification`` (absolute positions).
        pattern: Who attends to whom (default: the paper's pattern with a window of 4).
        kernel: ``"banded"`` (blocked banded products, any device) or ``"flex"`` (``flex_attention`` with a block
            mask, compiled with ``torch.compile``).
        block_size: Block length of the banded kernel (default 32, at least the window).
        row_chunk: Without gradients, process about this many document tokens at a time after the key and value
            projections (attention, output projection, feed-forward), updating the states in place, so that peak
            memory stays near three copies of the hidden states (``None``: whole batches at once).
    """

    def __init__(
        self,
        model: nn.Module,
        pattern: AttentionPattern | None = None,
        *,
        kernel: str = "banded",
        block_size: int | None = None,
        row_chunk: int | None = 512,
    ):
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if block_size is not None and block_size < 1:
            raise ValueError(f"block_size must be at least 1, got {block_size}")
        if row_chunk is not None and row_chunk < 1:
            raise ValueError(f"row_chunk must be at least 1, got {row_chunk}")
        backbone_of(model)  # fails early on an unsupported model
        self.model = model
        self.pattern = pattern or AttentionPattern()
        self.kernel = kernel
        self.block_size = block_size
        self.row_chunk = row_chunk
        self.train(model.training)  # nn.Module starts in training mode; keep the wrapped model's mode

    @property
    def config(self):
        """The wrapped model's config (``num_labels``, ``max_position_embeddings``...)."""
        return self.model.config

    def extra_repr(self) -> str:
        """The pattern and kernel, shown by ``repr``."""
        return f"pattern={self.pattern}, kernel={self.kernel!r}"

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        """Scores padded ``[CLS] query [SEP] document [SEP]`` inputs, as the Hugging Face model would be called."""
        queries, docs = split_joint_inputs(
            input_ids, attention_mask, token_type_ids, share_queries=self.pattern.shares_query
        )
        return SequenceClassifierOutput(logits=self.score(docs, queries))

    def encode_queries(self, queries: QueryTokens) -> QueryStates:
        """Runs distinct queries through every layer, attending to themselves only, and keeps their keys and values."""
        if not self.pattern.shares_query:
            raise ValueError(f"queries cannot be encoded apart under {self.pattern}: they attend to [CLS] or the doc")
        parts = backbone_of(self.model)
        queries = queries.to(self._device())
        positions = 1 + torch.arange(queries.ids.shape[1], device=queries.ids.device)[None].expand_as(queries.ids)
        states = embed(parts, queries.ids, queries.types, positions)
        keys, values = [], []
        for index, layer in enumerate(parts.layers):
            attention = layer.attention.self
            keys.append(project(attention.key, states, parts.num_heads))
            values.append(project(attention.value, states, parts.num_heads))
            if index < len(parts.layers) - 1:
                context = segment_attention(
                    project(attention.query, states, parts.num_heads),
                    [(keys[-1], values[-1], queries.mask)],
                    dropout=self._attention_dropout(parts),
                )
                states = finish_layer(layer, states, context, chunk=None)
        return QueryStates(keys, values, queries.mask, queries.mask.sum(1))

    def score(self, docs: DocTokens, queries: QueryTokens | QueryStates) -> torch.Tensor:
        """The logits ``(pairs, labels)`` of the pairs in ``docs``, each with its query from ``queries``.

        Args:
            docs: [CLS] and document tokens, with the row of each pair's query.
            queries: The query tokens, or (when the pattern shares queries) their states from :meth:`encode_queries`.
        """
        parts, pattern, device = backbone_of(self.model), self.pattern, self._device()
        docs = docs.to(device)
        if isinstance(queries, QueryStates):
            if not pattern.shares_query:
                raise ValueError(f"encoded queries cannot be used under {pattern}: queries must see the documents")
            query_states = queries
        else:
            queries = queries.to(device)
            query_states = self.encode_queries(queries) if pattern.shares_query else None
        query_lengths = queries.mask.sum(1) if query_states is None else query_states.lengths
        pair_query = docs.pair_query
        query_mask = (queries.mask if query_states is None else query_states.mask)[pair_query]

        full_doc = pattern.window is None or pattern.window >= docs.ids.shape[1] - 1
        block = 1 if full_doc or self.kernel != "banded" else block_size_for(pattern.window, self.block_size)
        doc_ids, doc_types, doc_mask = (_pad_to_multiple(tensor, block) for tensor in (docs.ids, docs.types, docs.mask))
        table_size = parts.embeddings.position_embeddings.num_embeddings
        positions = (1 + query_lengths[pair_query])[:, None] + torch.arange(doc_ids.shape[1], device=device)[None]
        doc_states = embed(parts, doc_ids, doc_types, positions.clamp(max=table_size - 1))
        cls_positions = torch.zeros_like(docs.cls_ids)[:, None]
        cls_states = embed(parts, docs.cls_ids[:, None], docs.cls_types[:, None], cls_positions)
        own_query = None
        if query_states is None:
            query_ids = queries.ids[pair_query]
            query_positions = 1 + torch.arange(query_ids.shape[1], device=device)[None].expand_as(query_ids)
            own_query = embed(parts, query_ids, queries.types[pair_query], query_positions)

        doc_layer = _DocLayer(self, full_doc, query_mask, doc_mask, block, doc_states.dtype)
        heads, dropout = parts.num_heads, self._attention_dropout(parts)
        for index, layer in enumerate(parts.layers):
            attention = layer.attention.self
            cls_query = project(attention.query, cls_states, heads)
            cls_kv = _key_values(attention, cls_states, heads, None)
            doc_kv, buffers = doc_layer.key_values(attention, doc_states, heads)
            if query_states is None:
                query_kv = _key_values(attention, own_query, heads, query_mask)
            else:
                query_kv = _KeyValues(
                    query_states.keys[index][pair_query], query_states.values[index][pair_query], query_mask
                )
            seen = [cls_kv] + [query_kv] * pattern.cls_to_query + [doc_kv] * pattern.cls_to_doc
            cls_context = segment_attention(cls_query, seen, dropout=dropout)
            if index < len(parts.layers) - 1:  # the last layer feeds only [CLS] to the head
                if own_query is not None:
                    seen = [cls_kv] * pattern.query_to_cls + [query_kv] + [doc_kv] * pattern.query_to_doc
                    query_context = segment_attention(project(attention.query, own_query, heads), seen, dropout=dropout)
                    own_query = finish_layer(layer, own_query, query_context, chunk=None)
                doc_states = doc_layer(layer, doc_states, doc_kv, cls_kv, query_kv, buffers)
            cls_states = finish_layer(layer, cls_states, cls_context, chunk=None)
            del doc_kv, buffers, seen  # free this layer's document keys and values before the next layer's are made
        return parts.head(cls_states)

    def _attention_dropout(self, parts: Backbone) -> float:
        return parts.attention_dropout if self.model.training else 0.0  # follows model.train() / model.eval()

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device


class _KeyValues(NamedTuple):
    """Keys and values of one token group, ``(batch, heads, length, head_dim)``, and its key mask (or ``None``)."""

    keys: torch.Tensor
    values: torch.Tensor
    mask: torch.Tensor | None


def _key_values(attention: nn.Module, states: torch.Tensor, heads: int, mask: torch.Tensor | None) -> _KeyValues:
    return _KeyValues(project(attention.key, states, heads), project(attention.value, states, heads), mask)


class _DocLayer:
    """One layer for the document rows of a batch, the attention mask prepared once and shared by every layer.

    Without gradients, the banded kernel runs each layer in place and in chunks (``_banded_inference``); otherwise
    the layer is computed in one go, so that autograd sees ordinary operations.
    """

    def __init__(
        self,
        owner: SparseCrossEncoderModel,
        full_doc: bool,
        query_mask: torch.Tensor,
        doc_mask: torch.Tensor,
        block: int,
        dtype: torch.dtype,
    ):
        self.pattern, self.kernel, self.full_doc, self.block = owner.pattern, owner.kernel, full_doc, block
        self.row_chunk = owner.row_chunk
        self.dropout = owner._attention_dropout(backbone_of(owner.model))
        self.heads = backbone_of(owner.model).num_heads
        self.in_place = not torch.is_grad_enabled() and owner.kernel == "banded" and not full_doc and self.row_chunk
        global_masks = [doc_mask.new_ones(doc_mask.shape[0], 1)] * self.pattern.doc_to_cls
        global_masks += [query_mask] * self.pattern.doc_to_query
        global_mask = torch.cat(global_masks, dim=1) if global_masks else None
        window = self.pattern.window
        if full_doc:
            self.plan = None
        elif self.kernel == "flex":
            self.plan = flex_block_mask(global_mask, doc_mask, window=window)
        else:
            self.plan = window_bias(global_mask, doc_mask, window=window, block=block, dtype=dtype)
        self.doc_mask = doc_mask

    def key_values(self, attention: nn.Module, states: torch.Tensor, heads: int) -> tuple[_KeyValues, tuple | None]:
        """The document keys and values, and (in place) the padded buffers they are views of."""
        if not self.in_place:
            return _key_values(attention, states, heads, self.doc_mask), None
        window = self.pattern.window
        buffers = tuple(padded_projection(linear, states, window) for linear in (attention.key, attention.value))
        keys, values = (heads_of(buffer, states.shape[0], heads, window) for buffer in buffers)
        return _KeyValues(keys, values, self.doc_mask), buffers

    def __call__(
        self,
        layer: nn.Module,
        states: torch.Tensor,
        doc: _KeyValues,
        cls: _KeyValues,
        query_kv: _KeyValues,
        buffers: tuple | None,
    ) -> torch.Tensor:
        """The document states after ``layer``."""
        seen = [cls] * self.pattern.doc_to_cls + [query_kv] * self.pattern.doc_to_query
        if self.full_doc:
            context = segment_attention(
                project(layer.attention.self.query, states, self.heads), [*seen, doc], dropout=self.dropout
            )
            return finish_layer(layer, states, context, chunk=self.row_chunk)
        global_keys = torch.cat([kv.keys for kv in seen], dim=2) if seen else None
        global_values = torch.cat([kv.values for kv in seen], dim=2) if seen else None
        if self.in_place:
            banded_layer_(
                layer,
                states,
                *buffers,
                global_keys,
                global_values,
                self.plan,
                heads=self.heads,
                window=self.pattern.window,
                block=self.block,
                chunk=self.row_chunk,
            )
            return states
        query = project(layer.attention.self.query, states, self.heads)
        if self.kernel == "flex":
            context = flex_windowed_attention(query, doc.keys, doc.values, global_keys, global_values, self.plan)
        else:
            context = windowed_attention(
                query,
                doc.keys,
                doc.values,
                global_keys,
                global_values,
                self.plan,
                window=self.pattern.window,
                block=self.block,
                dropout=self.dropout,
            )
        return finish_layer(layer, states, context, chunk=self.row_chunk)


def _pad_to_multiple(tensor: torch.Tensor, multiple: int) -> torch.Tensor:
    extra = -tensor.shape[1] % multiple
    return F.pad(tensor, (0, extra)) if extra else tensor
