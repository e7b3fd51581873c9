"""GatedBertRanker: a cross-encoder that begins as its bi-encoder and learns cross-attention through zero-init gates.

Query and document are encoded as the bi-encoder encodes them, ``[CLS] q [SEP]`` and ``[CLS] d [SEP]``, each with
positions from 0 and token type 0. In every layer, query tokens attend to the query only (so each distinct query is
encoded once and shared by its candidates); document tokens attend to the document and, through a second softmax
over the query's keys, to the query, added with a per-layer, per-head gate ``tanh(g)``::

    context_d = softmax(Q_d K_d) V_d + tanh(g) * softmax(Q_d K_q) V_q

The score is ``scale * cos(mean(query states), mean(document states))``, the bi-encoder's own pooling. With every
``g = 0`` (as initialised) the scores are the bi-encoder's cosine times ``scale`` exactly; the gates' gradient does
not vanish there, so training opens them and document tokens learn to read the query in every layer.

A model made with a token-match term (``match_term=True``) scores ``scale * (cos + match_weight * match)``, with
``match = sum_i w_i max_j cos(q_i, d_j) / sum_i w_i``: each query token's best cosine among the document's final
token states (all but [CLS]), weighed by a fixed inverse document frequency ``w`` of its vocabulary entry (zero for
special tokens). ``match_weight`` starts at 0, so the warm start still scores as the bi-encoder, and training sets
how much exact and near-exact matches count: the lexical evidence a shallow mean-pooled cosine loses.

A model made with ``cross_layers=k`` reads the query in its top ``k`` layers only: the gates of the layers below are
held at zero (they get no gradient), so the document's states up to the first of those layers do not depend on the
query and can be computed once per document (:mod:`pyterrier_shallow.precomputed`). With closed gates it still
begins as the bi-encoder.

A symmetric model (``query_gates=True``) also lets query tokens read the document, through gates of their own::

    context_q = softmax(Q_q K_q) V_q + tanh(h) * softmax(Q_q K_d) V_d

with every ``h = 0`` at the start, so it still begins as the bi-encoder. Once ``h`` opens, a query's states depend
on the candidate, so the query is encoded again with each candidate (queries are short: training a 3-layer model
took 1.2 times as long a step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from pyterrier_shallow.sparse._backbone import finish_layer, project
from pyterrier_shallow.sparse._segments import DocTokens, QueryTokens, split_joint_inputs

MODEL_TYPE = "shallow-gated-bert"


class GatedBertConfig(BertConfig):
    """A BERT configuration with the gated cross-encoder's own settings.

    Args:
        score_scale: The initial value of the learnable ``scale`` that multiplies the cosine.
        doc_window: Document tokens attend to this many document neighbours each side, and to the document's
            [CLS] (``None``: to the whole document).
        match_term: Whether the score adds the token-match term (see the module's docstring).
        match_weight: The initial weight of the token-match term relative to the cosine (0: the warm start scores as
            the bi-encoder).
        query_gates: Whether query tokens also read the document, through zero-init gates (symmetric).
        cross_layers: Only the top this many layers read the query; the gates below stay closed (``None``: all).
        feed_forward_sizes: Per layer, the units of its feed-forward block (``None``: ``intermediate_size`` in
            every layer); a pruned model (:meth:`GatedBertRanker.prune_feed_forward`) has fewer in some.
        **kwargs: Passed on to ``BertConfig``.
    """

    model_type = MODEL_TYPE

    def __init__(self, score_scale: float = 20.0, doc_window: int | None = None, match_term: bool = False,
                 match_weight: float = 0.0, query_gates: bool = False, cross_layers: int | None = None,
                 feed_forward_sizes: list[int] | None = None, **kwargs):
        kwargs.setdefault("num_labels", 1)
        super().__init__(**kwargs)
        self.score_scale = float(score_scale)
        self.doc_window = doc_window
        self.match_term = bool(match_term)
        self.match_weight = float(match_weight)
        self.query_gates = bool(query_gates)
        layers = self.num_hidden_layers
        if cross_layers is not None and not 1 <= int(cross_layers) <= layers:
            raise ValueError(f"cross_layers must lie in [1, {layers}] (or be None), got {cross_layers}")
        self.cross_layers = None if cross_layers is None else int(cross_layers)
        if feed_forward_sizes is not None and (len(feed_forward_sizes) != layers
                                               or min(feed_forward_sizes, default=1) < 1):
            raise ValueError(f"feed_forward_sizes must give {layers} positive sizes, got {feed_forward_sizes}")
        self.feed_forward_sizes = None if feed_forward_sizes is None else [int(size) for size in feed_forward_sizes]


class EncodedQueries:
    """Distinct queries as the document side reads them.

    Per layer their keys and values; their pooled, normalised final states; for the token-match term their
    normalised final token states and each token's weight (``None`` without the term); and for a symmetric model
    their embedded inputs, from which each pair encodes its query again (``None`` otherwise).
    """

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], mask: torch.Tensor, vectors: torch.Tensor,
                 tokens: torch.Tensor | None = None, token_weights: torch.Tensor | None = None,
                 inputs: torch.Tensor | None = None):
        self.keys, self.values, self.mask, self.vectors = keys, values, mask, vectors
        self.tokens, self.token_weights, self.inputs = tokens, token_weights, inputs


class GatedBertRanker(BertPreTrainedModel):
    """The gated cross-encoder (see the module's docstring); a Hugging Face model with ``save_pretrained``.

    Called like a sequence classifier on ``[CLS] query [SEP] document [SEP]`` inputs (the pair tokenizer's output,
    token types telling query from document), it returns ``SequenceClassifierOutput`` with one logit per pair, so
    :class:`pyterrier_shallow.CrossEncoder` and the training loop use it as any other cross-encoder.

    Attributes:
        bert: The encoder (no pooler), as the bi-encoder's.
        gates: ``(layers, heads)``, ``tanh(gates)`` weighs each head's attention to the query.
        query_gates: In a symmetric model, ``(layers, heads)``: ``tanh(query_gates)`` weighs each head's attention
            from the query to the document.
        scale: The learnable factor of the cosine.
        match_weight: With the token-match term, its learnable weight relative to the cosine.
        term_weights: With the token-match term, the fixed ``(vocab,)`` weight of each vocabulary entry (a buffer).
    """

    config_class = GatedBertConfig
    base_model_prefix = "bert"

    def __init__(self, config: GatedBertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        for layer, size in zip(self.bert.encoder.layer, config.feed_forward_sizes or [], strict=False):
            if size != config.intermediate_size:
                layer.intermediate.dense = nn.Linear(config.hidden_size, size)
                layer.output.dense = nn.Linear(size, config.hidden_size)
        self.gates = nn.Parameter(torch.zeros(config.num_hidden_layers, config.num_attention_heads))
        if config.query_gates:
            self.query_gates = nn.Parameter(torch.zeros(config.num_hidden_layers, config.num_attention_heads))
        self.scale = nn.Parameter(torch.tensor(float(config.score_scale)))
        if config.match_term:
            self.match_weight = nn.Parameter(torch.tensor(float(config.match_weight)))
            self.register_buffer("term_weights", torch.zeros(config.vocab_size))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if module is self:
            with torch.no_grad():
                self.gates.zero_()
                if self.config.query_gates:
                    self.query_gates.zero_()
                self.scale.fill_(float(self.config.score_scale))
                if self.config.match_term:
                    self.match_weight.fill_(float(self.config.match_weight))
            return
        super()._init_weights(module)

    def set_term_weights(self, weights: torch.Tensor) -> None:
        """Sets the token-match term's fixed per-vocabulary weights (e.g. :func:`idf_term_weights`)."""
        if not self.config.match_term:
            raise ValueError("this model has no token-match term (made with match_term=False)")
        if weights.shape != self.term_weights.shape:
            raise ValueError(f"term weights must have shape {tuple(self.term_weights.shape)}, "
                             f"got {tuple(weights.shape)}")
        if not torch.isfinite(weights).all() or bool((weights < 0).any()):
            raise ValueError("term weights must be finite and non-negative")
        with torch.no_grad():
            self.term_weights.copy_(weights.to(self.term_weights))

    def open_gates(self) -> torch.Tensor:
        """``(layers, heads)``: ``tanh(gates)``, zero in the layers below the top ``cross_layers``."""
        gates = torch.tanh(self.gates)
        if self.config.cross_layers is None:
            return gates
        reads = torch.arange(len(gates), device=gates.device) >= len(gates) - self.config.cross_layers
        return gates * reads.to(gates.dtype)[:, None]

    def confine_cross_attention(self, cross_layers: int) -> None:
        """Lets only the top ``cross_layers`` layers read the query from now on, closing the gates below (in place).

        A model trained with every layer reading the query scores differently afterwards; train it on from here.
        """
        layers = self.config.num_hidden_layers
        if not 1 <= cross_layers <= layers:
            raise ValueError(f"cross_layers must lie in [1, {layers}], got {cross_layers}")
        self.config.cross_layers = int(cross_layers)
        with torch.no_grad():
            self.gates[: layers - cross_layers].zero_()

    def prune_feed_forward(self, layer: int, keep: torch.Tensor) -> None:
        """Keeps only the feed-forward units ``keep`` (indices) of ``layer``, dropping the others (in place).

        The layer then costs less per token; its outputs change, so train on from here (e.g. distilling the
        unpruned model).
        """
        block = self.bert.encoder.layer[layer]
        keep = torch.as_tensor(keep, dtype=torch.long).unique()
        first, second = block.intermediate.dense, block.output.dense
        if len(keep) == 0 or int(keep.max()) >= first.out_features:
            raise ValueError(f"keep must index the {first.out_features} units of layer {layer}")
        pruned_first = nn.Linear(first.in_features, len(keep)).to(first.weight)
        pruned_second = nn.Linear(len(keep), second.out_features).to(second.weight)
        with torch.no_grad():
            pruned_first.weight.copy_(first.weight[keep])
            pruned_first.bias.copy_(first.bias[keep])
            pruned_second.weight.copy_(second.weight[:, keep])
            pruned_second.bias.copy_(second.bias)
        block.intermediate.dense, block.output.dense = pruned_first, pruned_second
        sizes = self.config.feed_forward_sizes or [self.config.intermediate_size] * self.config.num_hidden_layers
        sizes[layer] = len(keep)
        self.config.feed_forward_sizes = sizes

    def first_query_layer(self) -> int:
        """The first layer in which document tokens read the query (the layer count when none does).

        The document's states below it depend on the document alone.
        """
        reading = (self.open_gates().detach().abs().amax(dim=1) > 0).nonzero()
        return int(reading[0]) if len(reading) else self.config.num_hidden_layers

    # ------------------------------------------------------------------------------------------------ encoding
    def _embed(self, cls_ids: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """States of ``[CLS] ids``, positions from 0 and token type 0, as the bi-encoder embeds a text."""
        tokens = torch.cat([cls_ids[:, None], ids], dim=1)
        return self.bert.embeddings(input_ids=tokens, token_type_ids=torch.zeros_like(tokens))

    def _dropout(self) -> float:
        return self.config.attention_probs_dropout_prob if self.training else 0.0

    def encode_queries(self, cls_ids: torch.Tensor, queries: QueryTokens) -> EncodedQueries:
        """Runs distinct queries (each ``q [SEP]``, after ``[CLS]``) through every layer, attending to themselves."""
        heads = self.config.num_attention_heads
        states = inputs = self._embed(cls_ids, queries.ids)
        mask = torch.cat([queries.mask.new_ones(len(queries.mask), 1), queries.mask], dim=1)
        attend = mask[:, None, None, :]
        keys, values = [], []
        for layer in self.bert.encoder.layer:
            attention = layer.attention.self
            keys.append(project(attention.key, states, heads))
            values.append(project(attention.value, states, heads))
            query = project(attention.query, states, heads)
            context = F.scaled_dot_product_attention(query, keys[-1], values[-1], attn_mask=attend,
                                                     dropout_p=self._dropout())
            states = finish_layer(layer, states, context, chunk=None)
        vectors = F.normalize(_mean_pool(states, mask), dim=-1)
        inputs = inputs if self.config.query_gates else None
        if not self.config.match_term:
            return EncodedQueries(keys, values, mask, vectors, inputs=inputs)
        ids = torch.cat([cls_ids[:, None], queries.ids], dim=1)
        weights = self.term_weights[ids] * mask.to(self.term_weights.dtype)
        return EncodedQueries(keys, values, mask, vectors, F.normalize(states, dim=-1), weights, inputs)

    def score(self, docs: DocTokens, queries: EncodedQueries, *, doc_window: int | None | str = "config"
              ) -> torch.Tensor:
        """The logits ``(pairs,)`` of the pairs in ``docs``, each against its row of ``queries``.

        Args:
            docs: [CLS] and document tokens, with the row of each pair's query.
            queries: From :meth:`encode_queries`.
            doc_window: Document tokens attend to this many neighbours each side (``None``: all; ``"config"``:
                the configuration's ``doc_window``).
        """
        heads = self.config.num_attention_heads
        pair_query = docs.pair_query
        states, mask, self_mask = self.embed_docs(docs, doc_window=doc_window)
        query_mask = queries.mask[pair_query][:, None, None, :]
        gates = self.open_gates()
        reads = self._layers_reading_query(gates)
        query_gates = torch.tanh(self.query_gates) if self.config.query_gates else None
        symmetric = query_gates is not None and (self.training or bool(query_gates.detach().abs().max() > 0))
        if symmetric and queries.inputs is None:
            raise ValueError("a symmetric gated model needs queries encoded by a symmetric model (no inputs given)")
        if not symmetric:
            for index in range(len(self.bert.encoder.layer)):
                gate = gates[index] if reads[index] else None
                states = self.doc_layer(index, states, self_mask, queries, pair_query, gate)
            return self.pair_scores(states, mask, queries, pair_query)
        query_states = queries.inputs[pair_query]
        to_doc_mask = mask[:, None, None, :]
        for index, layer in enumerate(self.bert.encoder.layer):
            attention = layer.attention.self
            query = project(attention.query, states, heads)
            key, value = project(attention.key, states, heads), project(attention.value, states, heads)
            context = F.scaled_dot_product_attention(query, key, value, attn_mask=self_mask,
                                                     dropout_p=self._dropout())
            # the pair's own query: its keys and values, and its tokens reading the document
            query_query = project(attention.query, query_states, heads)
            query_key = project(attention.key, query_states, heads)
            query_value = project(attention.value, query_states, heads)
            query_context = F.scaled_dot_product_attention(query_query, query_key, query_value,
                                                           attn_mask=query_mask, dropout_p=self._dropout())
            to_doc = F.scaled_dot_product_attention(query_query, key, value, attn_mask=to_doc_mask,
                                                    dropout_p=self._dropout())
            query_context = query_context + query_gates[index].to(to_doc.dtype)[None, :, None, None] * to_doc
            if reads[index]:
                to_query = F.scaled_dot_product_attention(query, query_key, query_value, attn_mask=query_mask,
                                                          dropout_p=self._dropout())
                context = context + gates[index].to(context.dtype)[None, :, None, None] * to_query
            query_states = finish_layer(layer, query_states, query_context, chunk=None)
            states = finish_layer(layer, states, context, chunk=None)
        return self.pair_scores(states, mask, queries, pair_query, query_states=query_states)

    def embed_docs(self, docs: DocTokens, *, doc_window: int | None | str = "config"
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The documents' input states ([CLS] first), their mask of real tokens and their self-attention mask.

        ``doc_window`` as in :meth:`score`.
        """
        mask = torch.cat([docs.mask.new_ones(len(docs.mask), 1), docs.mask], dim=1)
        window = self.config.doc_window if doc_window == "config" else doc_window
        return self._embed(docs.cls_ids, docs.ids), mask, doc_self_mask(mask, window)

    def doc_layer(self, index: int, states: torch.Tensor, self_mask: torch.Tensor, queries: EncodedQueries,
                  pair_query: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
        """Layer ``index`` of the document side: self-attention plus, with a ``gate`` row, gated reading of the query.

        Args:
            index: The layer.
            states: ``(pairs, length, hidden)`` the document's states entering it ([CLS] first).
            self_mask: Which document keys each document row attends to (:func:`doc_self_mask`).
            queries: The distinct queries, from :meth:`encode_queries`.
            pair_query: ``(pairs,)`` each pair's row of ``queries``.
            gate: ``(heads,)`` the open gates of this layer, or ``None`` where the layer does not read the query.
        """
        layer = self.bert.encoder.layer[index]
        attention = layer.attention.self
        heads = self.config.num_attention_heads
        query = project(attention.query, states, heads)
        key, value = project(attention.key, states, heads), project(attention.value, states, heads)
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=self_mask, dropout_p=self._dropout())
        if gate is not None:
            to_query = F.scaled_dot_product_attention(
                query, queries.keys[index][pair_query], queries.values[index][pair_query],
                attn_mask=queries.mask[pair_query][:, None, None, :], dropout_p=self._dropout())
            context = context + gate.to(context.dtype)[None, :, None, None] * to_query
        return finish_layer(layer, states, context, chunk=None)

    def pair_scores(self, states: torch.Tensor, mask: torch.Tensor, queries: EncodedQueries, pair_query: torch.Tensor,
                    *, query_states: torch.Tensor | None = None) -> torch.Tensor:
        """The logits ``(pairs,)`` from the documents' final states ``(pairs, length, hidden)`` ([CLS] first).

        ``query_states`` are a symmetric model's per-pair final query states (``None``: the shared encodings).
        """
        doc_vectors = F.normalize(_mean_pool(states, mask), dim=-1)
        if query_states is not None:
            query_vectors = F.normalize(_mean_pool(query_states, queries.mask[pair_query]), dim=-1)
        else:
            query_vectors = queries.vectors[pair_query]
        similarity = (doc_vectors * query_vectors).sum(-1)
        if self.config.match_term:
            if query_states is not None:
                query_tokens = F.normalize(query_states, dim=-1)
            else:
                query_tokens = queries.tokens[pair_query]
            match = _token_match(query_tokens, queries.token_weights[pair_query], F.normalize(states, dim=-1), mask)
            similarity = similarity + self.match_weight * match
        return self.scale * similarity

    def _layers_reading_query(self, gates: torch.Tensor) -> list[bool]:
        """Per layer, whether document tokens attend to the query (while training: wherever a gate may open)."""
        if self.training:
            cross_layers = self.config.cross_layers or len(gates)
            return [index >= len(gates) - cross_layers for index in range(len(gates))]
        return (gates.detach().abs().amax(dim=1) > 0).tolist()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **unused,
    ) -> SequenceClassifierOutput:
        """Scores padded ``[CLS] query [SEP] document [SEP]`` inputs; each distinct query is encoded once."""
        queries, docs = split_joint_inputs(input_ids, attention_mask, token_type_ids, share_queries=True)
        encoded = self.encode_queries(docs.cls_ids[:1].expand(len(queries.ids)), queries)  # one [CLS] id for all
        return SequenceClassifierOutput(logits=self.score(docs, encoded)[:, None])

    def gate_summary(self, which: str = "gates") -> list[dict]:
        """Per layer, the mean and the largest ``|tanh(g)|`` over heads: how far cross-attention opened.

        Args:
            which: ``"gates"`` (documents reading the query) or, in a symmetric model, ``"query_gates"``.
        """
        if which not in ("gates", "query_gates") or not hasattr(self, which):
            raise ValueError(f"this model has no {which!r} (symmetric: {self.config.query_gates})")
        return gate_summary(getattr(self, which).detach())


def gate_summary(gates: torch.Tensor) -> list[dict]:
    """Per layer (row of ``gates``), the mean and the largest ``|tanh(g)|`` over heads."""
    opened = torch.tanh(gates.float()).abs()
    return [{"layer": index, "mean": round(float(row.mean()), 4), "max": round(float(row.max()), 4)}
            for index, row in enumerate(opened)]


def _token_match(query_tokens: torch.Tensor, token_weights: torch.Tensor, doc_tokens: torch.Tensor,
                 doc_mask: torch.Tensor) -> torch.Tensor:
    """``(pairs,)``: each query token's best cosine over the document's tokens, averaged with the term weights.

    Args:
        query_tokens: ``(pairs, query length, hidden)`` each pair's normalised query token states.
        token_weights: ``(pairs, query length)`` their weights (zero on padding).
        doc_tokens: ``(pairs, doc length, hidden)`` normalised document token states ([CLS] first).
        doc_mask: ``(pairs, doc length)`` true on real tokens.
    """
    weights = token_weights.to(doc_tokens.dtype)
    similarity = torch.einsum("pqh,pdh->pqd", query_tokens.to(doc_tokens.dtype), doc_tokens)
    content = doc_mask.bool().clone()
    content[:, 0] = False  # the document's [CLS]
    best = similarity.masked_fill(~content[:, None, :], -1.0).amax(-1)
    return (best * weights).sum(-1) / weights.sum(-1).clamp(min=1e-6)


def _mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(states.dtype)[..., None]
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def doc_self_mask(mask: torch.Tensor, window: int | None) -> torch.Tensor:
    """``(pairs, 1, length, length)`` boolean: which document keys each document row attends to."""
    keys = mask[:, None, None, :]
    if window is None:
        return keys
    length = mask.shape[1]
    position = torch.arange(length, device=mask.device)
    band = (position[:, None] - position[None, :]).abs() <= window
    band[:, 0] = True  # every row sees the document's [CLS]
    band[0, :] = True  # and [CLS] sees the whole document
    return keys & band[None, None]


class WindowedGatedModel(nn.Module):
    """A gated cross-encoder with the interface :class:`~pyterrier_shallow.SparseCrossEncoder` scores through.

    Queries are encoded once (they attend to themselves only, as always in this model); document tokens attend to
    their [CLS] and ``window`` neighbours each side (a band mask: exact, though it saves no memory), and through
    the gates to the query.

    Args:
        model: The gated cross-encoder (shared, not copied).
        window: Document neighbours each side (``None``: the whole document).
        cls_id: The tokenizer's [CLS] id.
    """

    def __init__(self, model: GatedBertRanker, window: int | None, cls_id: int):
        super().__init__()
        self.model, self.window, self.cls_id = model, window, cls_id

    def encode_queries(self, queries: QueryTokens) -> EncodedQueries:
        """Encodes distinct queries (each ``q [SEP]``)."""
        device = next(self.model.parameters()).device
        queries = queries.to(device)
        return self.model.encode_queries(torch.full((len(queries.ids),), self.cls_id, device=device), queries)

    def score(self, docs: DocTokens, queries: EncodedQueries) -> torch.Tensor:
        """The logits ``(pairs, 1)``."""
        docs = docs.to(next(self.model.parameters()).device)
        return self.model.score(docs, queries, doc_window=self.window)[:, None]
