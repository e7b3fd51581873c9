"""SparseCrossEncoder: a cross-encoder reranker whose attention follows a sparse pattern."""

from __future__ import annotations

import copy
import os

import numpy as np
import pyterrier as pt
import torch

from pyterrier_shallow._batching import length_sorted_batches
from pyterrier_shallow._hf import choose_device, choose_dtype
from pyterrier_shallow.anchor import Anchor, resolve_anchor
from pyterrier_shallow.cross_encoder import SCORING_SETTINGS, CrossEncoder, ScoringStats
from pyterrier_shallow.sparse._segments import PairLayout, doc_tokens, query_tokens
from pyterrier_shallow.sparse.model import KERNELS, SparseCrossEncoderModel
from pyterrier_shallow.sparse.pattern import AttentionPattern
from pyterrier_shallow.sparse.positions import extend_position_embeddings

_QUERY_CHUNK = 16
"""Distinct queries whose per-layer keys and values are held at once."""


class SparseCrossEncoder(CrossEncoder):
    """Scores (``query``, ``text``) rows with a cross-encoder under sparse attention, and re-ranks by that score.

    The weights are those of any BERT-family sequence-classification checkpoint; the pattern is chosen at inference
    time (Schlatt, Fröbe and Hagen, ECIR 2024). By default [CLS] sees everything, query tokens see only the query,
    and document tokens see [CLS], the query and ``window`` tokens on each side. As the query then never looks at a
    document, each distinct query is encoded once and its per-layer keys and values are shared by all its
    candidates. Everything else is as in :class:`~pyterrier_shallow.CrossEncoder`: validation, batching across
    queries, float32 ``score`` and fresh ``rank``, counted truncation, lazy loading and pickling.

    Example::

        shallow = pyterrier_shallow.CrossEncoder("./model")
        sparse = pyterrier_shallow.SparseCrossEncoder.from_cross_encoder(shallow, window=4)
        pipeline = bm25 % 100 >> pyterrier_shallow.TextLoader(dataset) >> sparse

    Args:
        model: A Hugging Face hub id, a local checkpoint directory, or a ``(model, tokenizer)`` pair already loaded.
        window: Document-to-document window on each side (``None``: the whole document); used when ``pattern`` is
            not given.
        pattern: The full attention pattern; when given, its own window applies and ``window`` is ignored.
        kernel: ``"banded"`` (blocked banded products) or ``"flex"`` (``flex_attention``, compiled on first use).
        block_size: Block length of the banded kernel (default 32, at least the window).
        extend_positions: When ``max_length`` exceeds the model's position embeddings, stretch them to
            ``max_length`` by linear interpolation (a loaded model is copied first, never changed in place).
        row_chunk: Document tokens processed at once inside a layer (``None``: whole batches); bounds peak memory.
        batch_size: The most pairs in one forward pass.
        token_budget: The most tokens (padding included) in one forward pass.
        query_length: The most tokens kept of a query (``None``: the length the model was trained with, or 64).
        doc_length: The most tokens kept of a document (``None``: the length the model was trained with, or
            whatever ``max_length`` leaves).
        max_length: The most tokens of a pair, special tokens included (``None``: the model's limit).
        device: ``"cpu"``, ``"cuda"``... (``None``: CUDA when present).
        dtype: The compute dtype (``None``: float32 on CPU, bfloat16 or float16 on CUDA).
        text_field: The column that holds the document text.
        anchor: How the first stage's ``score`` is mixed in, as for :class:`CrossEncoder`.
        warn_truncation: Warn, with counts, when queries or documents were truncated.
        verbose: Show a progress bar over batches.
    """

    schematic = {"label": "SparseCrossEncoder", "help_url": None}

    def __init__(
        self,
        model: str | os.PathLike | tuple | None = None,
        *,
        window: int | None = 4,
        pattern: AttentionPattern | None = None,
        kernel: str = "banded",
        block_size: int | None = None,
        extend_positions: bool = False,
        row_chunk: int | None = 512,
        batch_size: int = 64,
        token_budget: int = 16384,
        query_length: int | None = None,
        doc_length: int | None = None,
        max_length: int | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        text_field: str = "text",
        anchor: Anchor | bool | None = None,
        warn_truncation: bool = True,
        verbose: bool = False,
    ):
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        self.window = window
        self._pattern = pattern  # as given (pt.inspect reads it): None when the pattern comes from ``window``
        self.pattern = pattern if pattern is not None else AttentionPattern(window=window)
        self.kernel = kernel
        self.block_size = block_size
        self.extend_positions = extend_positions
        self.row_chunk = row_chunk
        self._sparse = None
        self._layout = None
        self._owns_model = not isinstance(model, tuple)
        super().__init__(
            model,
            batch_size=batch_size,
            token_budget=token_budget,
            query_length=query_length,
            doc_length=doc_length,
            max_length=max_length,
            device=device,
            dtype=dtype,
            text_field=text_field,
            anchor=anchor,
            warn_truncation=warn_truncation,
            verbose=verbose,
        )

    @classmethod
    def from_cross_encoder(cls, cross_encoder: CrossEncoder, window: int | None = 4, **options) -> SparseCrossEncoder:
        """The same checkpoint and settings as ``cross_encoder``, scored under sparse attention.

        A model ``cross_encoder`` has already loaded is shared (not copied) when device and dtype agree.

        Args:
            cross_encoder: The dense reranker.
            window: Document-to-document window on each side.
            **options: Any other argument of :class:`SparseCrossEncoder`, overriding the copied settings.

        Raises:
            ValueError: When ``cross_encoder`` scores in int8 (the sparse kernels need float weights).
        """
        if cross_encoder.precision != "float32":
            raise ValueError(
                f"SparseCrossEncoder has no {cross_encoder.precision} scoring: build it from a float32 CrossEncoder "
                "(the sparse kernels read the float weights)"
            )
        settings = {name: getattr(cross_encoder, name) for name in SCORING_SETTINGS}
        settings.update(options)
        source, loaded = cross_encoder.source, cross_encoder._network
        if loaded is None:
            return cls(source, window=window, **settings)
        device = choose_device(settings["device"])
        same_place = device == cross_encoder.device and choose_dtype(device, settings["dtype"]) == cross_encoder.dtype
        model = loaded if same_place else copy.deepcopy(loaded)
        sparse = cls((model, cross_encoder._tokenizer), window=window, **settings)
        sparse.model, sparse.source = cross_encoder.model, source  # a copy, pickled or rebuilt, reloads the weights
        sparse.anchoring = resolve_anchor(sparse.anchor, source)
        sparse._owns_model = not same_place
        return sparse

    def __repr__(self) -> str:
        source = type(self._network).__name__ if isinstance(self.source, tuple) else str(self.source)
        return f"SparseCrossEncoder({source!r}, pattern={self.pattern}, device={self.device.type!r})"

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        if state["_network"] is None:
            state.update(_sparse=None, _layout=None, _owns_model=True)
        return state

    @property
    def network(self) -> torch.nn.Module:
        """The underlying Hugging Face model (``torch.nn.Module``), loaded on first use."""
        if self._network is None:
            self._owns_model = True
        return super().network

    @property
    def sparse_model(self) -> SparseCrossEncoderModel:
        """The model as a :class:`SparseCrossEncoderModel` (an ``nn.Module`` sharing its weights)."""
        self.network  # noqa: B018 - loads it
        return self._sparse

    def _prepare_model(self) -> None:
        positions = getattr(self._network.config, "max_position_embeddings", 512)
        if self.max_length is not None and self.max_length > positions:
            if not self.extend_positions:
                raise ValueError(
                    f"max_length={self.max_length} exceeds the model's {positions} position embeddings; "
                    "pass extend_positions=True to interpolate them to max_length"
                )
            if not self._owns_model:
                self._network, self._owns_model = copy.deepcopy(self._network), True
            extend_position_embeddings(self._network, self.max_length)
        super()._prepare_model()
        self._layout = PairLayout.of(self._tokenizer)
        from pyterrier_shallow.gated.model import GatedBertRanker, WindowedGatedModel

        if isinstance(self._network, GatedBertRanker):
            if self.pattern != AttentionPattern(window=self.pattern.window):
                raise ValueError(
                    f"a gated cross-encoder runs under the default pattern with a window, not {self.pattern}"
                )
            self._sparse = WindowedGatedModel(self._network, self.pattern.window, self._layout.cls_id).eval()
            return
        self._sparse = SparseCrossEncoderModel(
            self._network, self.pattern, kernel=self.kernel, block_size=self.block_size, row_chunk=self.row_chunk
        ).eval()

    @torch.inference_mode()
    def score_pairs(self, queries: list[str], texts: list[str]) -> np.ndarray:
        """Scores ``zip(queries, texts)`` and returns float32 scores in the same order."""
        if len(queries) != len(texts):
            raise ValueError(f"got {len(queries)} queries but {len(texts)} texts")
        sparse = self.sparse_model
        encoded = self._pairs.encode(queries, texts)
        work = self._plan(encoded)
        stats = ScoringStats(
            pairs=len(queries),
            truncated_docs=encoded.truncated_docs,
            truncated_queries=encoded.truncated_queries,
            batches=len(work),
            tokens=int(encoded.lengths.sum()),
        )
        scores = np.empty(len(queries), dtype=np.float32)
        encoded_rows, query_states = None, None
        for rows, batch in pt.tqdm(work, desc="SparseCrossEncoder", unit="batch", disable=not self.verbose):
            if rows is None:  # queries that see the document: encoded with each batch
                batch_rows, pair_query = np.unique(encoded.pair_query[batch], return_inverse=True)
                queries_in = query_tokens(encoded, batch_rows, self._layout)
                stats.padded_tokens += len(batch) * queries_in.ids.shape[1]
            else:
                if rows is not encoded_rows:
                    queries_in = query_tokens(encoded, rows, self._layout)
                    stats.padded_tokens += queries_in.ids.numel()
                    query_states, encoded_rows = sparse.encode_queries(queries_in), rows
                queries_in, pair_query = query_states, encoded.pair_query[batch] - rows[0]
            docs = doc_tokens(encoded, batch, pair_query, self._layout)
            stats.padded_tokens += docs.ids.numel() + len(batch)
            logits = sparse.score(docs, queries_in).float()
            batch_scores = logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]
            scores[batch] = batch_scores.cpu().numpy()
        self.last_stats = stats
        self._report_truncation(stats)
        return scores

    def _plan(self, encoded) -> list[tuple[np.ndarray | None, np.ndarray]]:
        """Batches of pairs; with shared queries, each batch comes with the chunk of query rows it draws on."""
        if not self.pattern.shares_query:
            batches = length_sorted_batches(encoded.lengths, batch_size=self.batch_size, token_budget=self.token_budget)
            return [(None, batch) for batch in batches]
        chunk_of_pair = encoded.pair_query // _QUERY_CHUNK
        work = []
        for chunk in range(int(chunk_of_pair.max(initial=-1)) + 1):
            pairs = np.flatnonzero(chunk_of_pair == chunk)
            rows = np.arange(chunk * _QUERY_CHUNK, min((chunk + 1) * _QUERY_CHUNK, len(encoded.query_ids)))
            for batch in length_sorted_batches(
                encoded.lengths[pairs], batch_size=self.batch_size, token_budget=self.token_budget
            ):
                work.append((rows, pairs[batch]))
        return work
