"""How long scoring takes: a per-call overhead plus a cost per token, fitted on the machine and updated online."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class TokenCostModel:
    """Predicts the time to score pairs as ``overhead_ms + ms_per_token * tokens``.

    Tokens are the exact lengths of the pairs (query, document and special tokens, after truncation). Length-sorted
    batching keeps padding small, so the cost of a forward pass grows with these tokens; the model is refitted on
    the machine (:meth:`fit`) and its per-token cost follows drift in speed online (:meth:`update`).

    Attributes:
        overhead_ms: The fixed cost of a scoring call.
        ms_per_token: The cost of each token.
    """

    overhead_ms: float
    ms_per_token: float

    def __post_init__(self):
        if not (self.overhead_ms >= 0 and np.isfinite(self.overhead_ms)):
            raise ValueError(f"overhead_ms must be finite and at least 0, got {self.overhead_ms}")
        if not (self.ms_per_token > 0 and np.isfinite(self.ms_per_token)):
            raise ValueError(f"ms_per_token must be finite and positive, got {self.ms_per_token}")

    def predict_ms(self, tokens: int | float) -> float:
        """Returns the predicted time of scoring pairs of ``tokens`` tokens in all (0 for none)."""
        return 0.0 if tokens <= 0 else self.overhead_ms + self.ms_per_token * float(tokens)

    def depth_for(self, lengths: Sequence[int] | np.ndarray, budget_ms: float) -> int:
        """Returns how many leading pairs (of the given token lengths, in order) can be scored within ``budget_ms``."""
        lengths = np.asarray(lengths, dtype=np.float64)
        if len(lengths) == 0 or budget_ms <= self.overhead_ms:
            return 0
        cost = self.overhead_ms + self.ms_per_token * np.cumsum(lengths)
        return int(np.searchsorted(cost, budget_ms, side="right"))

    def update(self, tokens: int, measured_ms: float, *, weight: float = 0.2) -> None:
        """Moves the per-token cost towards the one observed on a call (exponential moving average).

        Args:
            tokens: The tokens scored by the call.
            measured_ms: How long the call took.
            weight: How much the new observation counts (0: ignore it, 1: replace the estimate).
        """
        if not 0 <= weight <= 1:
            raise ValueError(f"weight must lie in [0, 1], got {weight}")
        if tokens <= 0:
            return
        observed = max(measured_ms - self.overhead_ms, 0.0) / tokens
        if observed > 0:
            self.ms_per_token = (1 - weight) * self.ms_per_token + weight * observed

    @classmethod
    def fit(cls, tokens: Sequence[float], times_ms: Sequence[float]) -> TokenCostModel:
        """Fits the model by least squares on timed calls (at least two distinct token counts).

        A negative fitted overhead is set to 0 (and the per-token cost refitted through the origin).
        """
        tokens = np.asarray(tokens, dtype=np.float64)
        times_ms = np.asarray(times_ms, dtype=np.float64)
        if len(tokens) != len(times_ms):
            raise ValueError(f"got {len(tokens)} token counts but {len(times_ms)} times")
        if len(np.unique(tokens)) < 2:
            raise ValueError("fitting needs calls of at least two different token counts")
        slope, intercept = np.polyfit(tokens, times_ms, 1)
        if intercept < 0 or slope <= 0:
            intercept = 0.0
            slope = float(times_ms.sum() / tokens.sum())
        return cls(overhead_ms=float(intercept), ms_per_token=max(float(slope), 1e-9))


def calibrate(
    score_pairs,
    queries: Sequence[str],
    texts: Sequence[str],
    lengths: Sequence[int],
    *,
    sizes: Sequence[int] = (1, 4, 16, 64),
    repeats: int = 3,
) -> TokenCostModel:
    """Times ``score_pairs`` on leading slices of the given pairs and fits a :class:`TokenCostModel`.

    One untimed call warms the scorer up; each slice is then timed ``repeats`` times and its fastest time kept
    (the least disturbed by other work on the machine).

    Args:
        score_pairs: The scorer, called as ``score_pairs(queries, texts)``.
        queries: The queries of the sample pairs.
        texts: The documents of the sample pairs.
        lengths: The token length of each pair.
        sizes: The slice sizes timed (those larger than the sample are cut to it).
        repeats: Timings of each slice.
    """
    count = len(queries)
    if count == 0:
        raise ValueError("calibration needs at least one pair")
    sizes = sorted({min(size, count) for size in sizes if size >= 1})
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(sizes) < 2 and count >= 2:
        sizes = [1, count]
    score_pairs(list(queries[: sizes[-1]]), list(texts[: sizes[-1]]))
    tokens, times_ms = [], []
    for size in sizes:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            score_pairs(list(queries[:size]), list(texts[:size]))
            best = min(best, (time.perf_counter() - start) * 1e3)
        tokens.append(int(lengths[:size].sum()))
        times_ms.append(best)
    if len(set(tokens)) < 2:  # a single pair: no overhead can be told apart
        return TokenCostModel(overhead_ms=0.0, ms_per_token=max(times_ms[0] / max(tokens[0], 1), 1e-9))
    return TokenCostModel.fit(tokens, times_ms)
