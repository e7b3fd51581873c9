"""ScoreFusion: hybrid retrieval by fusing the rankings of several retrievers (e.g. BM25 and dense)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyterrier as pt

from pyterrier_shallow._frames import require_columns, require_str_ids
from pyterrier_shallow._records import FrameTransformer

NORMALIZATIONS = ("zscore", "minmax", "rrf")


class ScoreFusion(FrameTransformer):
    """Runs several retrievers on the same queries and ranks the union of their documents by a weighted sum.

    Each retriever's scores are first made comparable per query: ``"zscore"`` (subtract the query's mean, divide by
    its standard deviation), ``"minmax"`` (scale to [0, 1]) or ``"rrf"`` (reciprocal rank ``1 / (rrf_k + rank + 1)``,
    scores ignored). A document that a retriever did not return gets that retriever's lowest normalised score for
    the query (0 for ``"rrf"``).

    Example::

        bm25 = pyterrier_shallow.bm25(dataset, "./bm25-index")
        dense = pyterrier_shallow.FaissIndex("./dense.faiss").retriever(pyterrier_shallow.BiEncoder())
        hybrid = pyterrier_shallow.ScoreFusion(bm25 % 100, dense % 100, weights=[1.0, 1.0])

    Args:
        *retrievers: Transformers that take a query frame and return a result frame.
        weights: One weight per retriever (``None``: all 1).
        normalize: ``"zscore"``, ``"minmax"`` or ``"rrf"``.
        rrf_k: The rank offset of ``"rrf"``.
        num_results: Documents kept per query after fusion.
    """

    schematic = {"label": "ScoreFusion", "help_url": None, "inner_pipelines_mode": "combine"}

    def __init__(
        self,
        *retrievers: pt.Transformer,
        weights: Sequence[float] | None = None,
        normalize: str = "zscore",
        rrf_k: float = 60.0,
        num_results: int = 1000,
    ):
        if len(retrievers) < 2:
            raise ValueError(f"ScoreFusion needs at least two retrievers, got {len(retrievers)}")
        weights = [1.0] * len(retrievers) if weights is None else [float(weight) for weight in weights]
        if len(weights) != len(retrievers):
            raise ValueError(f"got {len(weights)} weights for {len(retrievers)} retrievers")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"unknown normalize {normalize!r}; choose one of {list(NORMALIZATIONS)}")
        if num_results < 1:
            raise ValueError(f"num_results must be at least 1, got {num_results}")
        self.retrievers = list(retrievers)
        self.weights = weights
        self.normalize = normalize
        self.rrf_k = rrf_k
        self.num_results = num_results

    def __repr__(self) -> str:
        inner = ", ".join(repr(retriever) for retriever in self.retrievers)
        return f"ScoreFusion({inner}, weights={self.weights}, normalize={self.normalize!r})"

    def subtransformers(self) -> dict[str, pt.Transformer]:
        """The fused retrievers, for PyTerrier's inspection."""
        return {f"retrievers[{i}]": retriever for i, retriever in enumerate(self.retrievers)}

    def transform_inputs(self) -> list[list[str]]:
        """The columns every fused retriever needs (the first input configuration of each, joined)."""
        columns = ["qid"]
        for retriever in self.retrievers:
            configurations = pt.inspect.transformer_inputs(retriever, strict=False) or [[]]
            columns += [column for column in configurations[0] if column not in columns]
        return [columns]

    def fuse_rank_cutoff(self, k: int) -> pt.Transformer:
        """Keeps ``k`` fused results a query (``self % k``)."""
        if k >= self.num_results:
            return self
        fused = copy.copy(self)
        fused.num_results = k
        return fused

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Returns the fused ranking: every input column plus ``docno``, float32 ``score`` and ``rank``."""
        require_columns(inp, ["qid"], who="ScoreFusion")
        require_str_ids(inp, ["qid"], who="ScoreFusion")
        fused = None
        for position, (retriever, weight) in enumerate(zip(self.retrievers, self.weights, strict=True)):
            results = retriever(inp)
            require_columns(results, ["qid", "docno", "score"], who=f"ScoreFusion (output of {retriever!r})")
            column = f"_score{position}"
            run = results[["qid", "docno"]].assign(**{column: weight * self._normalized(results)})
            fused = run if fused is None else fused.merge(run, on=["qid", "docno"], how="outer")
        scores = [f"_score{position}" for position in range(len(self.retrievers))]
        for column in scores:
            floor = 0.0 if self.normalize == "rrf" else fused.groupby("qid")[column].transform("min")
            fused[column] = fused[column].fillna(floor)
        fused = fused.assign(score=fused[scores].sum(axis=1).astype(np.float32)).drop(columns=scores)
        fused = fused.sort_values(["qid", "score"], ascending=[True, False], kind="stable")
        fused["rank"] = fused.groupby("qid").cumcount()
        fused = fused[fused["rank"] < self.num_results]
        queries = inp.drop(columns=[column for column in ("docno", "score", "rank") if column in inp.columns])
        out = queries.merge(fused, on="qid", how="inner")
        out["rank"] = out["rank"].astype(np.int64)
        return out.reset_index(drop=True)

    def _normalized(self, results: pd.DataFrame) -> np.ndarray:
        if len(results) == 0:
            return np.empty(0, dtype=np.float64)
        if self.normalize == "rrf":
            ranks = results.groupby("qid")["score"].rank(method="first", ascending=False) - 1
            return (1.0 / (self.rrf_k + ranks + 1)).to_numpy()
        scores = results["score"].astype(np.float64)
        groups = scores.groupby(results["qid"])
        if self.normalize == "zscore":
            spread = groups.transform("std", ddof=0).replace(0.0, 1.0)
            return ((scores - groups.transform("mean")) / spread).to_numpy()
        low, high = groups.transform("min"), groups.transform("max")
        return ((scores - low) / (high - low).replace(0.0, 1.0)).to_numpy()
