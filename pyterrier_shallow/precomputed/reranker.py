"""PrecomputedCrossEncoder: reranks with a gated cross-encoder, reading documents' lower layers from an index."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyterrier as pt
import torch

from pyterrier_shallow._frames import require_columns, require_str_ids, require_texts, with_scores
from pyterrier_shallow._pair_tokenizer import PairTokenizer
from pyterrier_shallow._quantize import PRECISIONS, quantize_for_cpu
from pyterrier_shallow._records import FrameTransformer
from pyterrier_shallow._warnings import warn_user
from pyterrier_shallow.anchor import Anchor, anchor_inputs, resolve_anchor
from pyterrier_shallow.cross_encoder import DEFAULT_QUERY_LENGTH, CrossEncoder, ScoringStats, trained_lengths
from pyterrier_shallow.precomputed._split import rerank_states, split_layer
from pyterrier_shallow.precomputed.index import DocStateIndex, model_fingerprint
from pyterrier_shallow.sparse._segments import PairLayout, QueryTokens, pad_rows

QUERIES_AT_ONCE = 256
"""Distinct queries encoded together; their keys and values are kept while their candidates are scored."""


def model_source(model: str | os.PathLike | tuple | None) -> str | os.PathLike | tuple:
    """``model``, or the shipped precomputed model's folder for ``None``."""
    from pyterrier_shallow._hf import PRECOMPUTED_CROSS_ENCODER_DIR

    return PRECOMPUTED_CROSS_ENCODER_DIR if model is None else model


def load_model(model: str | os.PathLike | tuple | None) -> tuple[object, torch.nn.Module, object]:
    """``(source, model, tokenizer)`` of a gated cross-encoder folder, a loaded pair, or ``None`` (the shipped one)."""
    from pyterrier_shallow.gated import load_gated
    from pyterrier_shallow.gated.model import GatedBertRanker

    if isinstance(model, tuple):
        network, tokenizer = model
        if not isinstance(network, GatedBertRanker):
            raise ValueError(f"precomputed states need a gated cross-encoder, not a {type(network).__name__}")
        return model, network.float().eval(), tokenizer
    source = model_source(model)
    network, tokenizer = load_gated(source)
    return source, network, tokenizer


class PrecomputedCrossEncoder(FrameTransformer):
    """Scores (``query``, document) rows with a gated cross-encoder whose documents' lower layers come from an index.

    Each distinct query is encoded once; each candidate then runs only the layers that read the query, on its
    stored states (:class:`DocStateIndex`), its tokens laid out flat without padding. The scores equal the full
    model's (``CrossEncoder``) with the index's ``doc_length``, to float32 rounding for a float32 index and about
    1e-2 for a float16 one. The candidates must be documents of the index; no text is needed, but where the frame
    has ``text_field`` it is checked against the indexed texts (``check_text``).

    Example::

        index = DocStateIndex("./vaswani.states")
        pipeline = bm25 % 100 >> index.reranker()

    Args:
        index: The index of document states, or its path.
        model: The model that built the index (``None``: the folder the index records).
        query_length: The most tokens kept of a query (``None``: the model's trained length, or 64).
        batch_tokens: The most document tokens in one forward pass.
        precision: ``"float32"``, or ``"int8"`` for dynamic int8 quantisation of the linear layers on CPU.
        text_field: The column checked against the indexed texts, where the frame has it.
        check_text: Raise when a candidate's text differs from the one indexed (the corpus changed).
        anchor: How the first stage's ``score`` is mixed in (see :class:`~pyterrier_shallow.CrossEncoder`).
        warn_truncation: Warn once, with counts, when queries are truncated.
        verbose: Show a progress bar over queries.
    """

    schematic = {"label": "PrecomputedCE", "help_url": None}

    def __init__(
        self,
        index: DocStateIndex | str | os.PathLike,
        model: str | os.PathLike | tuple | None = None,
        *,
        query_length: int | None = None,
        batch_tokens: int = 16384,
        precision: str = "float32",
        text_field: str = "text",
        check_text: bool = True,
        anchor: Anchor | bool | None = None,
        warn_truncation: bool = True,
        verbose: bool = False,
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if batch_tokens < 1:
            raise ValueError(f"batch_tokens must be at least 1, got {batch_tokens}")
        self.index = index if isinstance(index, DocStateIndex) else DocStateIndex(index)
        self.model = model
        recorded = self.index.meta.get("model")
        if model is None and recorded is None:
            raise ValueError(f"{self.index!r} was built with a model given in memory; pass it as `model`")
        self.source = recorded if model is None else model
        self.query_length = query_length or trained_lengths(self.source).get("query_length") or DEFAULT_QUERY_LENGTH
        self.batch_tokens = batch_tokens
        self.precision = precision
        self.text_field = text_field
        self.check_text = check_text
        self.anchor = anchor
        self.anchoring = resolve_anchor(anchor, None if isinstance(self.source, tuple) else self.source)
        self.warn_truncation = warn_truncation
        self.verbose = verbose
        self.last_stats = ScoringStats()
        self._warned_truncation = False
        self._loaded = None
        if isinstance(model, tuple):
            self._load()

    def __repr__(self) -> str:
        source = "<model>" if isinstance(self.source, tuple) else str(self.source)
        return f"PrecomputedCrossEncoder({self.index!r}, {source!r}, precision={self.precision!r})"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if not isinstance(self.source, tuple):
            state["_loaded"] = None  # reloaded lazily where unpickled
        return state

    def _load(self) -> tuple:
        """The model (checked against the index), its pair tokenizer and layout, loaded once."""
        if self._loaded is None:
            _, network, tokenizer = load_model(self.source)
            meta = self.index.meta
            split = int(meta["split_layer"])
            if network.config.hidden_size != meta["hidden_size"] or network.config.num_hidden_layers != meta[
                    "num_layers"]:
                raise ValueError(f"{self.index!r} was built with a model of {meta['num_layers']} layers of "
                                 f"{meta['hidden_size']}; this one has {network.config.num_hidden_layers} of "
                                 f"{network.config.hidden_size}")
            if split_layer(network) < split:
                raise ValueError(f"this model reads the query from layer {split_layer(network)}, below the index's "
                                 f"split layer {split}: its states there depend on the query; index with this model")
            if model_fingerprint(network, split) != meta["fingerprint"]:
                raise ValueError(f"{self.index!r} was built with another model ({meta['model']!r}, fingerprint "
                                 f"{meta['fingerprint']}); rerank with that model, or index with this one")
            network = quantize_for_cpu(network, self.precision)
            pairs = PairTokenizer(tokenizer, query_length=self.query_length, doc_length=1,
                                  max_length=self.query_length + 4)
            self._loaded = (network, pairs, PairLayout.of(tokenizer), split)
        return self._loaded

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Scores every row of ``inp`` and returns it with float32 ``score`` and a fresh ``rank``."""
        who = type(self).__name__
        require_columns(inp, ["qid", "query", "docno"], who=who)
        if len(inp) == 0:
            return with_scores(inp, np.empty(0, dtype=np.float32))
        require_str_ids(inp, who=who)
        require_texts(inp, "query", who=who, allow_empty=False)
        first_stage = anchor_inputs(inp, self.anchoring, who=who)  # checked before scoring
        rows = self.index.positions(inp["docno"].tolist(), who=who)
        if self.check_text and self.text_field in inp.columns:
            require_texts(inp, self.text_field, who=who, allow_empty=True)
            self.index.check_texts(rows, inp[self.text_field].tolist(), who=who)
        scores = self.score_rows(inp["query"].tolist(), rows)
        return with_scores(inp, self.anchor_scores(inp["qid"].to_numpy(), first_stage, scores))

    anchor_scores = CrossEncoder.anchor_scores  # the same mix, counting flat first stages in ``last_stats``

    @torch.inference_mode()
    def score_rows(self, queries: list[str], rows: np.ndarray) -> np.ndarray:
        """Scores each query against the indexed document at the same position of ``rows``; float32 scores."""
        network, pairs, layout, split = self._load()
        codes, distinct = pd.factorize(pd.Series(queries), sort=False)
        ids, cut = pairs.truncated_ids(list(distinct), self.query_length)
        offsets = self.index.arrays()["offsets"]
        lengths = offsets[rows + 1] - offsets[rows]
        scores = np.empty(len(rows), dtype=np.float32)
        stats = ScoringStats(pairs=len(rows), truncated_queries=int(cut[codes].sum()), tokens=int(lengths.sum()))
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(ids) + 1))
        with pt.tqdm(total=len(ids), desc=type(self).__name__, unit="query", disable=not self.verbose) as progress:
            for first in range(0, len(ids), QUERIES_AT_ONCE):  # encoded a block at a time: memory stays bounded
                block = ids[first : first + QUERIES_AT_ONCE]
                token_ids, mask = pad_rows([row + [layout.query_sep_id] for row in block], layout.pad_id)
                encoded = network.encode_queries(
                    torch.full((len(block),), layout.cls_id),
                    QueryTokens(torch.from_numpy(token_ids), torch.full(token_ids.shape, layout.query_type),
                                torch.from_numpy(mask)))
                for row in range(len(block)):
                    pairs_of_query = order[bounds[first + row] : bounds[first + row + 1]]
                    for batch in _token_batches(pairs_of_query, lengths, self.batch_tokens):
                        residual, doc_queries, doc_lengths = self.index.states(rows[batch])
                        scores[batch] = rerank_states(network, residual, doc_queries, doc_lengths, encoded, row,
                                                      split).numpy()
                        stats.batches += 1
                    progress.update(1)
        stats.padded_tokens = stats.tokens
        self.last_stats = stats
        if cut.any() and self.warn_truncation and not self._warned_truncation:
            self._warned_truncation = True
            warn_user(f"{type(self).__name__} truncated {int(cut.sum())} of {len(ids)} distinct queries to "
                      f"query_length={self.query_length} tokens (reported once per reranker)")
        return scores


def _token_batches(pairs: np.ndarray, lengths: np.ndarray, budget: int) -> list[np.ndarray]:
    """``pairs`` cut into consecutive runs of at most ``budget`` tokens (at least one pair a run)."""
    batches, start, used = [], 0, 0
    for position, pair in enumerate(pairs.tolist()):
        if position > start and used + int(lengths[pair]) > budget:
            batches.append(pairs[start:position])
            start, used = position, 0
        used += int(lengths[pair])
    batches.append(pairs[start:])
    return batches
