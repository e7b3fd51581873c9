"""BudgetedReranker: reranks, query by query, as many candidates as fit a latency budget."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pyterrier as pt

from pyterrier_shallow._frames import require_columns, require_numeric, require_str_ids, require_texts, with_scores
from pyterrier_shallow._records import FrameTransformer
from pyterrier_shallow.anchor import anchor_inputs
from pyterrier_shallow.budget._order import first_stage_order, merge_reranked
from pyterrier_shallow.budget.cost_model import TokenCostModel, calibrate

_FIRST_CHUNK = 16


class BudgetedReranker(FrameTransformer):
    """Reranks each query's top candidates with a cross-encoder, as many as fit ``budget_ms``.

    Queries are served one at a time. For each, the candidates are taken in first-stage order (``rank``, else
    ``score``), their exact pair lengths in tokens are counted (in chunks, only as far as could fit), and the longest
    prefix whose predicted scoring time fits what is left of the budget is reranked; the remaining candidates follow
    below it in first-stage order. The prediction is a :class:`TokenCostModel` fitted on this machine (by
    :meth:`warmup`, or else on the first query seen, untimed, unless given) whose per-token cost is updated after
    every query, and the time spent outside scoring (tokenising, assembling the frame) is tracked too and kept out of
    the budget. Longer texts therefore get a shallower rerank, shorter texts a deeper one. An anchored reranker (see
    :mod:`pyterrier_shallow.anchor`) mixes the first stage's ``score`` into its own over the reranked prefix alone,
    which stays above the rest.

    Example::

        pipeline = bm25 % 1000 >> TextLoader(dataset) >> BudgetedReranker(CrossEncoder("./model"), budget_ms=50)

    Args:
        reranker: A :class:`~pyterrier_shallow.CrossEncoder` (or subclass): it must have ``score_pairs`` and
            ``pair_lengths``.
        budget_ms: The time allowed to this stage per query, in milliseconds.
        cost_model: The scoring-time model to start from (``None``: calibrate on the first query).
        adapt: Update the per-token cost and the time outside scoring after every query.
        headroom: The fraction of the budget kept free to absorb noise in timings.
        min_depth: Rerank at least this many candidates per query, whatever the budget.
        max_depth: Rerank at most this many (``None``: no limit but the budget).
        text_field: The column that holds the document text.
        verbose: Show a progress bar over queries.

    Attributes:
        log: One row per query served: ``qid``, ``candidates``, ``depth``, ``tokens``, ``predicted_ms``,
            ``scoring_ms`` and ``total_ms`` (the whole time this stage spent on the query).
    """

    schematic = {"label": "BudgetedReranker", "help_url": None}

    def __init__(
        self,
        reranker: pt.Transformer,
        budget_ms: float,
        *,
        cost_model: TokenCostModel | None = None,
        adapt: bool = True,
        headroom: float = 0.1,
        min_depth: int = 0,
        max_depth: int | None = None,
        text_field: str = "text",
        verbose: bool = False,
    ):
        if not all(callable(getattr(reranker, name, None)) for name in ("score_pairs", "pair_lengths")):
            raise TypeError(
                f"BudgetedReranker needs a CrossEncoder (with score_pairs and pair_lengths), got "
                f"{type(reranker).__name__}"
            )
        if not budget_ms > 0:
            raise ValueError(f"budget_ms must be positive, got {budget_ms}")
        if not 0 <= headroom < 1:
            raise ValueError(f"headroom must lie in [0, 1), got {headroom}")
        if min_depth < 0 or (max_depth is not None and max_depth < max(min_depth, 1)):
            raise ValueError(f"need 0 <= min_depth <= max_depth and max_depth >= 1, got {min_depth}, {max_depth}")
        self.reranker = reranker
        self.budget_ms = float(budget_ms)
        self.cost_model = cost_model
        self.adapt = adapt
        self.headroom = headroom
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.text_field = text_field
        self.verbose = verbose
        self._after_ms = 0.0
        self._last_depth = _FIRST_CHUNK
        self._log: list[dict] = []

    def __repr__(self) -> str:
        return f"BudgetedReranker({self.reranker!r}, budget_ms={self.budget_ms:g})"

    @property
    def log(self) -> pd.DataFrame:
        """The per-query record of what was reranked and how long it took."""
        columns = ["qid", "candidates", "depth", "tokens", "predicted_ms", "scoring_ms", "total_ms"]
        return pd.DataFrame(self._log, columns=columns)

    def pair_lengths(self, queries: list[str], texts: list[str]) -> np.ndarray:
        """Returns the exact length in tokens of each (query, text) pair, as the reranker will score it."""
        return np.asarray(self.reranker.pair_lengths(queries, texts), dtype=np.int64)

    def depth_for(self, lengths: np.ndarray, budget_ms: float) -> int:
        """Returns how many leading candidates, of the given pair lengths, to rerank within ``budget_ms``."""
        if self.cost_model is None:
            raise RuntimeError("BudgetedReranker has no cost model yet: call calibrate() or pass cost_model")
        depth = self.cost_model.depth_for(lengths, budget_ms * (1 - self.headroom))
        if self.max_depth is not None:
            depth = min(depth, self.max_depth)
        return min(max(depth, self.min_depth), len(lengths))

    def calibrate(self, inp: pd.DataFrame, *, sample: int = 64) -> TokenCostModel:
        """Fits the cost model by timing the reranker on up to ``sample`` rows of ``inp`` (first-stage order)."""
        rows = first_stage_order(inp).head(sample)
        if len(rows) == 0:
            raise ValueError("BudgetedReranker.calibrate needs at least one row")
        queries, texts = rows["query"].tolist(), rows[self.text_field].tolist()
        lengths = self.pair_lengths(queries, texts)
        self.cost_model = calibrate(self.reranker.score_pairs, queries, texts, lengths)
        return self.cost_model

    def warmup(self, inp: pd.DataFrame | None = None) -> BudgetedReranker:
        """Loads the reranker's weights and fits the cost model now, rather than on the first query served.

        Without it the first call does both (untimed, but it takes seconds: reading the weights, then timing the
        reranker on up to 64 pairs). Does nothing when a cost model is already there.

        Args:
            inp: A result frame (``qid``, ``query``, ``docno`` and the text field) whose first query to calibrate on;
                ``None`` takes the first query of the bundled Vaswani collection and 64 of its documents.

        Returns:
            This reranker, ready to serve.
        """
        if self.cost_model is not None:
            return self
        if inp is None:
            from pyterrier_shallow.datasets import vaswani

            collection = vaswani()
            query = collection.get_topics().iloc[0]
            docs = [doc for doc, _ in zip(collection.get_corpus_iter(), range(64), strict=False)]
            inp = pd.DataFrame({"qid": query["qid"], "query": query["query"], "docno": [doc["docno"] for doc in docs],
                                self.text_field: [doc["text"] for doc in docs]})
        require_columns(inp, ["qid", "docno", "query", self.text_field], who="BudgetedReranker.warmup")
        ordered = first_stage_order(inp)
        self.calibrate(ordered[ordered["qid"] == ordered["qid"].iloc[0]])
        return self

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Reranks each query's top candidates within the budget; returns every row, float32 score, fresh rank."""
        entered = time.perf_counter()
        require_columns(inp, ["qid", "docno", "query", self.text_field], who="BudgetedReranker")
        if len(inp) == 0:
            return with_scores(inp, np.empty(0, dtype=np.float32))
        require_str_ids(inp, who="BudgetedReranker")
        if inp.duplicated(["qid", "docno"]).any():
            raise ValueError("BudgetedReranker: the input has duplicate (qid, docno) rows")
        require_texts(inp, "query", who="BudgetedReranker", allow_empty=False)
        require_texts(inp, self.text_field, who="BudgetedReranker", allow_empty=True)
        require_numeric(inp, ["rank", "score"], who="BudgetedReranker")  # they give the first-stage order
        anchor_inputs(inp, getattr(self.reranker, "anchoring", None), who="BudgetedReranker")  # a usable `score`
        ordered = first_stage_order(inp)
        if self.cost_model is None:  # untimed: calibration is part of the warm-up
            calibration_start = time.perf_counter()
            self.calibrate(ordered[ordered["qid"] == ordered["qid"].iloc[0]])
            entered += time.perf_counter() - calibration_start
        groups = list(ordered.groupby("qid", sort=False).indices.values())
        shared_ms = (time.perf_counter() - entered) * 1e3 / len(groups)  # checks and ordering, shared by the queries
        outputs = [
            self._serve(ordered.iloc[rows], shared_ms)
            for rows in pt.tqdm(groups, desc="BudgetedReranker", unit="query", disable=not self.verbose)
        ]
        return pd.concat(outputs, ignore_index=True)

    def _serve(self, query: pd.DataFrame, shared_ms: float) -> pd.DataFrame:
        """Reranks one query's candidates (in first-stage order) within the budget."""
        start = time.perf_counter() - shared_ms / 1e3
        queries, texts = query["query"].tolist(), query[self.text_field].tolist()
        depth, lengths = self._choose_depth(queries, texts, start)
        chosen = time.perf_counter()
        scores = np.zeros(len(query), dtype=np.float32)
        scoring_ms = 0.0
        if depth > 0:
            scoring_start = time.perf_counter()
            scores[:depth] = self.reranker.score_pairs(queries[:depth], texts[:depth])
            scoring_ms = (time.perf_counter() - scoring_start) * 1e3
            if getattr(self.reranker, "anchoring", None) is not None:
                head = query.iloc[:depth]
                scores[:depth] = self.reranker.anchor_scores(
                    head["qid"].to_numpy(), head["score"].to_numpy(dtype=np.float64), scores[:depth]
                )
        out = merge_reranked(query, np.arange(len(query)) < depth, scores)
        end = time.perf_counter()
        total_ms = (end - start) * 1e3
        after_ms = (end - chosen) * 1e3 - scoring_ms
        tokens = int(lengths[:depth].sum())
        predicted_ms = self.cost_model.predict_ms(tokens)
        if self.adapt:
            if depth > 0:
                self.cost_model.update(tokens, scoring_ms)
            self._after_ms = 0.8 * self._after_ms + 0.2 * after_ms if self._log else after_ms
        self._last_depth = max(depth, _FIRST_CHUNK)
        self._log.append(
            {
                "qid": query["qid"].iloc[0],
                "candidates": len(query),
                "depth": depth,
                "tokens": tokens,
                "predicted_ms": predicted_ms,
                "scoring_ms": scoring_ms,
                "total_ms": total_ms,
            }
        )
        return out

    def _choose_depth(self, queries: list[str], texts: list[str], start: float) -> tuple[int, np.ndarray]:
        """Counts pair lengths chunk by chunk, as far as could fit, and returns the depth and the lengths counted."""
        cap = len(texts) if self.max_depth is None else min(len(texts), self.max_depth)
        lengths = np.empty(0, dtype=np.int64)
        chunk = max(self._last_depth * 2, _FIRST_CHUNK, self.min_depth)
        while True:
            end = min(len(lengths) + chunk, cap)
            if end > len(lengths):
                counted = self.pair_lengths(queries[len(lengths) : end], texts[len(lengths) : end])
                lengths = np.concatenate([lengths, counted])
            spent_ms = (time.perf_counter() - start) * 1e3
            left_ms = self.budget_ms - spent_ms - self._after_ms
            depth = self.depth_for(lengths, left_ms)
            if depth < len(lengths) or len(lengths) >= cap:
                return depth, lengths
            chunk *= 2
