"""CrossEncoder: reranks (query, text) pairs with any Hugging Face sequence-classification checkpoint."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt
import torch

from pyterrier_shallow._batching import length_sorted_batches
from pyterrier_shallow._frames import require_columns, require_str_ids, require_texts, with_scores
from pyterrier_shallow._hf import choose_device, choose_dtype, default_cross_encoder_path, load_pretrained
from pyterrier_shallow._pair_tokenizer import PairTokenizer
from pyterrier_shallow._quantize import PRECISIONS, quantize_for_cpu
from pyterrier_shallow._records import FrameTransformer
from pyterrier_shallow._warnings import warn_user
from pyterrier_shallow.anchor import Anchor, first_stage_scores, flat_queries, resolve_anchor

DEFAULT_QUERY_LENGTH = 64
TRAINING_CARD = "training_card.json"


def trained_lengths(source: object) -> dict[str, int]:
    """Returns the query and document lengths a checkpoint folder was trained with (from its training card)."""
    if isinstance(source, tuple):
        return {}
    card = Path(source) / TRAINING_CARD
    if not card.is_file():
        return {}
    config = json.loads(card.read_text(encoding="utf-8")).get("config", {})
    return {key: int(config[key]) for key in ("query_length", "doc_length") if config.get(key)}


@dataclass
class ScoringStats:
    """What the last call to a scorer did: pairs scored, truncations, batches and tokens (padding included)."""

    pairs: int = 0
    truncated_docs: int = 0
    truncated_queries: int = 0
    batches: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    flat_first_stage_queries: int = 0
    """Queries whose first-stage scores had no spread (one candidate, or all equal): the model alone ranked them."""


SCORING_SETTINGS = (
    "batch_size",
    "token_budget",
    "query_length",
    "doc_length",
    "max_length",
    "device",
    "dtype",
    "text_field",
    "anchor",
    "warn_truncation",
    "verbose",
)
"""The constructor arguments that :class:`CrossEncoder` and :class:`~pyterrier_shallow.SparseCrossEncoder` share
(``SparseCrossEncoder.from_cross_encoder`` copies them; ``precision`` is the dense reranker's alone)."""


class CrossEncoder(FrameTransformer):
    """Scores each (``query``, ``text``) row of a result frame with a cross-encoder and re-ranks by that score.

    Pairs from all queries of the frame are batched together, sorted by length to cut padding, and bounded by both a
    pair count and a token budget. Only the document is truncated to fit (the query keeps up to ``query_length``
    tokens), and every truncation is counted and reported. One-logit heads give that logit as the score, two-logit
    heads the difference between the relevant and the non-relevant logit.

    Example::

        bm25 = PisaIndex("./index").bm25()
        pipeline = bm25 % 100 >> pyterrier_shallow.TextLoader(dataset) >> pyterrier_shallow.CrossEncoder("./model")

    Args:
        model: A Hugging Face hub id, a local checkpoint directory, or a ``(model, tokenizer)`` pair already loaded.
            ``None`` loads the cross-encoder shipped with the package.
        batch_size: The most pairs in one forward pass.
        token_budget: The most tokens (padding included) in one forward pass; bounds memory on long inputs.
        query_length: The most tokens kept of a query (``None``: the length the model was trained with, as its
            ``training_card.json`` records, or 64).
        doc_length: The most tokens kept of a document (``None``: the length the model was trained with, or
            whatever ``max_length`` leaves).
        max_length: The most tokens of a pair, special tokens included (``None``: the model's limit).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... (``None``: CUDA when present).
        dtype: The compute dtype (``None``: float32 on CPU, bfloat16 or float16 on CUDA).
        precision: ``"float32"``, or ``"int8"`` for dynamic int8 quantisation of the encoder's linear layers on CPU.
        text_field: The column that holds the document text.
        anchor: How the first stage's ``score`` is mixed in: ``None``, as the model's folder says (none when its
            folder has no ``anchor.json``); ``False``, never (the model's score alone); ``True``, the folder's mix or
            equal weights; or an :class:`~pyterrier_shallow.Anchor` with weights of its own.
        warn_truncation: Warn, with counts, the first time queries or documents are truncated (once per reranker;
            ``truncation_totals`` keeps the running counts and ``last_stats`` those of the last call).
        verbose: Show a progress bar over batches.
    """

    schematic = {"label": "CrossEncoder", "help_url": None}

    def __init__(
        self,
        model: str | os.PathLike | tuple | None = None,
        *,
        batch_size: int = 64,
        token_budget: int = 16384,
        query_length: int | None = None,
        doc_length: int | None = None,
        max_length: int | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        precision: str = "float32",
        text_field: str = "text",
        anchor: Anchor | bool | None = None,
        warn_truncation: bool = True,
        verbose: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.model = model  # as given (None: the shipped default), so that pt.inspect can rebuild this reranker
        self.source = default_cross_encoder_path() if model is None else model
        self.batch_size = batch_size
        self.token_budget = token_budget
        trained = trained_lengths(self.source)
        self.query_length = query_length or trained.get("query_length") or DEFAULT_QUERY_LENGTH
        self.doc_length = doc_length or trained.get("doc_length")
        self.max_length = max_length
        self.device = choose_device(device)
        self.dtype = choose_dtype(self.device, dtype)
        self.precision = precision
        self.text_field = text_field
        self.anchor = anchor
        self.anchoring = resolve_anchor(anchor, self.source)
        """The :class:`~pyterrier_shallow.Anchor` this reranker applies (``None``: the model's score alone)."""
        self.warn_truncation = warn_truncation
        self.verbose = verbose
        self.last_stats = ScoringStats()
        self.truncation_totals = ScoringStats()
        """Pairs scored and queries and documents truncated over every call so far (the other counts stay 0)."""
        self._warned_truncation = False
        self._network = None
        self._tokenizer = None
        self._pairs = None
        if isinstance(model, tuple):
            self._network, self._tokenizer = model
            self._prepare_model()

    def __repr__(self) -> str:
        source = type(self._network).__name__ if isinstance(self.source, tuple) else str(self.source)
        anchored = "" if self.anchoring is None else f", anchor={self.anchoring.describe()!r}"
        return f"CrossEncoder({source!r}, device={self.device.type!r}, precision={self.precision!r}{anchored})"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if not isinstance(self.source, tuple):
            state.update(_network=None, _tokenizer=None, _pairs=None)  # reloaded lazily where unpickled
        return state

    @property
    def network(self) -> torch.nn.Module:
        """The underlying Hugging Face model (``torch.nn.Module``), loaded on first use."""
        if self._network is None:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            from pyterrier_shallow.gated import is_delta, load_delta, register_auto_classes

            if is_delta(self.source):
                self._network, self._tokenizer = load_delta(self.source)
            else:
                register_auto_classes()
                self._tokenizer = load_pretrained(AutoTokenizer, self.source)
                self._network = load_pretrained(AutoModelForSequenceClassification, self.source)
            self._prepare_model()
        return self._network

    @property
    def tokenizer(self):
        """The model's tokenizer, loaded on first use."""
        self.network  # noqa: B018 - loads both
        return self._tokenizer

    def _prepare_model(self) -> None:
        num_labels = self._network.config.num_labels
        if num_labels not in (1, 2):
            raise ValueError(f"CrossEncoder needs a one- or two-logit classification head; this model has {num_labels}")
        self._network.to(device=self.device, dtype=self.dtype).eval()
        self._network = quantize_for_cpu(self._network, self.precision)
        model_limit = getattr(self._network.config, "max_position_embeddings", 512)
        tokenizer_limit = getattr(self._tokenizer, "model_max_length", model_limit) or model_limit
        max_length = self.max_length or min(model_limit, tokenizer_limit)
        if max_length > model_limit:
            raise ValueError(f"max_length={max_length} exceeds the model's {model_limit} position embeddings")
        self._pairs = PairTokenizer(
            self._tokenizer, query_length=self.query_length, doc_length=self.doc_length, max_length=max_length
        )

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Scores every row of ``inp`` and returns it with float32 ``score`` and a fresh ``rank``."""
        who = type(self).__name__
        require_columns(inp, ["qid", "docno", "query", self.text_field], who=who)
        if len(inp) == 0:
            return with_scores(inp, np.empty(0, dtype=np.float32))
        require_str_ids(inp, who=who)
        require_texts(inp, "query", who=who, allow_empty=False)
        require_texts(inp, self.text_field, who=who, allow_empty=True)
        first_stage = None if self.anchoring is None else first_stage_scores(inp, who=who)  # checked before scoring
        scores = self.score_pairs(inp["query"].tolist(), inp[self.text_field].tolist())
        if first_stage is not None:
            scores = self.anchor_scores(inp["qid"].to_numpy(), first_stage, scores)
        return with_scores(inp, scores)

    def anchor_scores(self, qids: np.ndarray, first_stage: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Mixes the model's ``scores`` with the ``first_stage`` scores of the same rows, as :attr:`anchoring` says.

        Without an anchor the model's scores come back as they are. The number of queries whose first-stage scores
        have no spread is recorded in ``last_stats.flat_first_stage_queries``.
        """
        if self.anchoring is None:
            return scores
        self.last_stats.flat_first_stage_queries = flat_queries(qids, first_stage)
        return self.anchoring.combine(qids, first_stage, scores)

    def pair_lengths(self, queries: list[str], texts: list[str]) -> np.ndarray:
        """Returns the length in tokens of each pair as scored (truncated, special tokens included)."""
        self.network  # noqa: B018 - the pair tokenizer is built with the model
        return self._pairs.encode(queries, texts).lengths

    @torch.inference_mode()
    def score_pairs(self, queries: list[str], texts: list[str]) -> np.ndarray:
        """Scores ``zip(queries, texts)`` and returns float32 scores in the same order."""
        if len(queries) != len(texts):
            raise ValueError(f"got {len(queries)} queries but {len(texts)} texts")
        model = self.network
        encoded = self._pairs.encode(queries, texts)
        batches = length_sorted_batches(encoded.lengths, batch_size=self.batch_size, token_budget=self.token_budget)
        stats = ScoringStats(
            pairs=len(queries),
            truncated_docs=encoded.truncated_docs,
            truncated_queries=encoded.truncated_queries,
            batches=len(batches),
            tokens=int(encoded.lengths.sum()),
        )
        scores = np.empty(len(queries), dtype=np.float32)
        for batch in pt.tqdm(batches, desc=type(self).__name__, unit="batch", disable=not self.verbose):
            inputs = self._pairs.collate(encoded, batch)
            stats.padded_tokens += inputs["input_ids"].numel()
            inputs = {name: tensor.to(self.device) for name, tensor in inputs.items()}
            logits = model(**inputs).logits.float()
            batch_scores = logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]
            scores[batch] = batch_scores.cpu().numpy()
        self.last_stats = stats
        self._report_truncation(stats)
        return scores

    def _report_truncation(self, stats: ScoringStats) -> None:
        """Adds the call's truncations to :attr:`truncation_totals` and warns the first time there are any."""
        totals = self.truncation_totals
        totals.pairs += stats.pairs
        totals.truncated_docs += stats.truncated_docs
        totals.truncated_queries += stats.truncated_queries
        if not self.warn_truncation or self._warned_truncation or not (stats.truncated_docs or stats.truncated_queries):
            return
        self._warned_truncation = True
        pairs = self._pairs
        warn_user(
            f"{type(self).__name__} truncated {stats.truncated_docs} of {stats.pairs} documents "
            f"(max_length={pairs.max_length}, doc_length={pairs.doc_length}) and {stats.truncated_queries} queries "
            f"(query_length={pairs.query_length}). Reported once per reranker: `truncation_totals` keeps the running "
            f"counts and `last_stats` those of the last call; pass warn_truncation=False to silence this."
        )
