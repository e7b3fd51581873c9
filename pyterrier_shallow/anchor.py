"""Anchored scores: a reranker's final score mixes the first stage's ``score`` with its own, per query.

The final score of each candidate is ``first_stage * z(first-stage score) + model * z(model score)``, where ``z``
standardises a score over the candidates of the same query (subtract their mean, divide by their standard
deviation). Per-query z-scores were chosen over other normalisations because

- they are invariant to shifting and scaling either score, so a model whose own score is a positive multiple of a
  cosine (a gated cross-encoder with closed gates) mixes exactly as the untrained hybrid of the first stage and the
  cosine;
- they are computed over whatever candidates the stage is given, so they hold under ``% k`` (the statistics are those
  of the k candidates) and need no corpus statistics or calibration;
- a query whose scores have no spread (one candidate, or a first stage that gives every candidate the same score)
  has no order to keep: its z-scores are 0, so the other score alone decides (a documented fallback, never NaN).

Min-max scaling was not chosen: one outlier squeezes every other candidate together.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pyterrier_shallow._io import atomic_write_json

ANCHOR_FILE = "anchor.json"
"""The file in a model's folder that holds its :class:`Anchor`."""
NORMALISATIONS = ("zscore",)
_FLAT = 1e-9
"""A query's scores count as having no spread when their standard deviation is at most this (relative) size."""


@dataclass(frozen=True)
class Anchor:
    """How a reranker mixes the first stage's score with its own.

    Args:
        first_stage: The weight of the first stage's per-query z-score.
        model: The weight of the model's own per-query z-score.
        normalisation: How scores are put on one scale per query (``"zscore"``, the only one).
        source: Where the weights come from (free text, shown on model cards).
    """

    first_stage: float = 1.0
    model: float = 1.0
    normalisation: str = "zscore"
    source: str = ""

    def __post_init__(self):
        for name in ("first_stage", "model"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"Anchor.{name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"Anchor.{name} must not be negative, got {value!r}")
        if self.first_stage == 0 and self.model == 0:
            raise ValueError("Anchor needs a positive weight on the first stage, the model or both")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"Anchor.normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}")

    def combine(self, qids, first_stage_scores, model_scores) -> np.ndarray:
        """Returns the anchored float32 scores of rows whose queries are ``qids``.

        Args:
            qids: Each row's query id (rows of a query need not be adjacent).
            first_stage_scores: Each row's first-stage score.
            model_scores: Each row's score from the model.
        """
        first = per_query_zscores(qids, first_stage_scores)
        own = per_query_zscores(qids, model_scores)
        return (self.first_stage * first + self.model * own).astype(np.float32)

    def to_dict(self) -> dict:
        """The anchor as the JSON object that :meth:`save` writes."""
        return asdict(self)

    def save(self, folder: str | os.PathLike) -> Path:
        """Writes the anchor into a model's ``folder`` as ``anchor.json`` (atomically) and returns the file."""
        path = Path(folder) / ANCHOR_FILE
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Anchor | None:
        """Reads ``anchor.json`` from a model's ``folder``; ``None`` when the folder has none.

        Raises:
            ValueError: When the file is not a valid anchor.
        """
        path = Path(folder) / ANCHOR_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            known = {key: data[key] for key in ("first_stage", "model", "normalisation", "source") if key in data}
            return cls(**known)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path} is not a valid anchor ({err})") from err

    def describe(self) -> str:
        """One line for cards and logs."""
        return f"{self.first_stage:g} * z(first stage) + {self.model:g} * z(model), z per query"


HYBRID = Anchor(
    first_stage=1.0,
    model=3.0,
    source="BM25 and all-MiniLM-L6-v2's cosine over BM25's top 100, chosen leaving one of NFCorpus dev, Cranfield "
    "and CISI out at a time",
)
"""The validated hybrid: ``z(BM25) + 3 * z(cosine)``, e.g. ``BiEncoder().text_scorer(anchor=HYBRID)``.

The weight was chosen on the training collections alone (every left-out collection chose 3 or 4); no model is
trained. ``anchor=True`` gives the equal-weight hybrid instead. Figures: ``docs/anchor.md``.
"""


def _spread(qids, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row its query's code and centred value; per query its standard deviation and whether it has no spread."""
    codes = pd.factorize(np.asarray(qids, dtype=object))[0]
    counts = np.bincount(codes)
    means = np.bincount(codes, weights=values) / counts
    centred = values - means[codes]
    stds = np.sqrt(np.bincount(codes, weights=centred * centred) / counts)
    return codes, centred, stds, stds <= _FLAT * np.maximum(1.0, np.abs(means))


def per_query_zscores(qids, values) -> np.ndarray:
    """Standardises ``values`` over the rows of each query (population standard deviation).

    A query whose values have no spread (a single row, or all equal) gets z-scores of 0.
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return values
    codes, centred, stds, flat = _spread(qids, values)
    safe = np.where(flat, 1.0, stds)
    return np.where(flat[codes], 0.0, centred / safe[codes])


def flat_queries(qids, values) -> int:
    """Counts the queries whose ``values`` have no spread: those :func:`per_query_zscores` gives z-scores of 0."""
    values = np.asarray(values, dtype=np.float64)
    return 0 if len(values) == 0 else int(_spread(qids, values)[3].sum())


def resolve_anchor(anchor: Anchor | bool | None, folder: object = None) -> Anchor | None:
    """Returns the anchor a reranker uses.

    Args:
        anchor: ``None``: the one saved in the model's ``folder`` (none if it has none); ``False``: none;
            ``True``: the folder's, else equal weights; an :class:`Anchor`: that one.
        folder: The model's folder, when it has one (hub ids and loaded models have none).
    """
    if isinstance(anchor, Anchor):
        return anchor
    if anchor is not None and not isinstance(anchor, bool):
        raise TypeError(f"anchor must be None, True, False or an Anchor, got {type(anchor).__name__}")
    if anchor is False:
        return None
    saved = Anchor.load(folder) if isinstance(folder, (str, os.PathLike)) and Path(folder).is_dir() else None
    if saved is None and anchor is True:
        return Anchor(source="equal weights")
    return saved


def first_stage_scores(inp: pd.DataFrame, *, who: str) -> np.ndarray:
    """Returns the first stage's ``score`` column as float64, with a clear error when it cannot anchor a ranking.

    Raises:
        KeyError: When ``inp`` has no ``score`` column.
        TypeError: When it holds something other than numbers.
        ValueError: When some scores are missing or infinite.
    """
    if "score" not in inp.columns:
        raise KeyError(
            f"{who} mixes the first stage's `score` into its own (an anchored model), but the input has no `score` "
            f"column (it has {list(inp.columns)}). Rerank a retriever's results, e.g. `bm25 % 100 >> TextLoader(...) "
            f">> reranker`, or pass anchor=False to score with the model alone."
        )
    values = inp["score"]
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise TypeError(
            f"{who}: the first stage's `score` must hold numbers to anchor the ranking, but it has dtype "
            f"{values.dtype}; convert it with pd.to_numeric, or pass anchor=False"
        )
    scores = values.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(scores)
    if bad.any():
        row = inp.iloc[int(np.flatnonzero(bad)[0])]
        raise ValueError(
            f"{who}: the first stage's `score` has {int(bad.sum())} missing or infinite value(s) (first at "
            f"qid={row.get('qid')!r}, docno={row.get('docno')!r}); an anchored ranking needs every score"
        )
    return scores


def anchor_inputs(inp: pd.DataFrame, anchoring: Anchor | None, *, who: str) -> np.ndarray | None:
    """Returns the first-stage scores an anchored transformer mixes in (checked), or ``None`` without an anchor."""
    return None if anchoring is None or len(inp) == 0 else first_stage_scores(inp, who=who)


def apply_anchor(anchoring: Anchor | None, inp: pd.DataFrame, first_stage: np.ndarray | None, scores) -> np.ndarray:
    """Returns ``scores`` mixed with ``first_stage`` as ``anchoring`` says (unchanged without an anchor)."""
    if anchoring is None or first_stage is None:
        return np.asarray(scores, dtype=np.float32)
    return anchoring.combine(inp["qid"].to_numpy(), first_stage, scores)


def without_anchor(transformer):
    """Returns a shallow copy of an anchored ``transformer`` that scores with its model alone (else ``transformer``).

    The copy shares the loaded model; use it to score once and mix with the first stage at several depths.
    """
    if getattr(transformer, "anchoring", None) is None:
        return transformer
    clone = copy.copy(transformer)
    clone.anchoring = None
    return clone
