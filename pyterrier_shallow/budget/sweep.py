"""Trade-off sweeps: effectiveness and latency of each reranker at each rerank depth, and the best choice per budget."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyterrier as pt

from pyterrier_shallow._frames import require_columns, require_str_ids
from pyterrier_shallow.anchor import anchor_inputs, without_anchor
from pyterrier_shallow.budget._order import first_stage_order, merge_reranked, positions
from pyterrier_shallow.budget.latency import measure_latency

FIRST_STAGE = "first stage"
"""The model name of the rows without reranking (depth 0) in a sweep table."""


def depth_grid(max_depth: int = 1000) -> list[int]:
    """Returns the geometric 1-2-5 grid of rerank depths up to ``max_depth`` (which is always included)."""
    if max_depth < 1:
        raise ValueError(f"max_depth must be at least 1, got {max_depth}")
    grid, decade = [], 1
    while decade <= max_depth:
        grid += [step * decade for step in (1, 2, 5) if step * decade <= max_depth]
        decade *= 10
    return grid if grid[-1] == max_depth else [*grid, max_depth]


@dataclass(frozen=True)
class Cascade:
    """A reranker swept over the order an earlier reranker gives every candidate, for :func:`sweep`.

    At depth k the sweep measures ``first_stage % deepest >> before % k >> reranker``: ``before`` reranks all of
    the first stage's candidates (to the deepest k), then ``reranker`` reranks the top k of that order, and the rest
    keep it. An anchored ``reranker`` mixes its own score with ``before``'s.

    Args:
        before: The earlier reranker; it must return every candidate it is given, with ``score`` and ``rank``.
        reranker: The reranker swept over depths.
    """

    before: pt.Transformer
    reranker: pt.Transformer


@dataclass
class SweepResult:
    """The outcome of :func:`sweep`.

    Attributes:
        table: One row per (model, depth): ``model``, ``depth``, the measure's column, ``mean_ms``, ``p50_ms`` and
            ``p95_ms`` (end to end, first stage included) and ``rerank_ms`` (mean of the reranking stage; of a
            :class:`Cascade`, its last stage). The first stage alone is the row of model ``"first stage"`` at depth 0.
        measure: The name of the effectiveness column.
        effectiveness_queries: How many queries the effectiveness is averaged over.
        latency_queries: How many queries each latency was measured on (a sample of the topics).
    """

    table: pd.DataFrame
    measure: str
    effectiveness_queries: int
    latency_queries: int

    def best_under(self, budget_ms: float) -> pd.Series | None:
        """Returns the most effective row whose mean latency fits ``budget_ms`` (the faster on ties), or ``None``."""
        fits = self.table[self.table["mean_ms"] <= budget_ms]
        if fits.empty:
            return None
        return fits.sort_values([self.measure, "mean_ms"], ascending=[False, True]).iloc[0]

    def budget_table(self, budgets_ms: Sequence[float]) -> pd.DataFrame:
        """Returns, for each budget, the best (model, depth), its effectiveness and its mean latency."""
        rows = []
        for budget in budgets_ms:
            best = self.best_under(budget)
            rows.append(
                {
                    "budget_ms": budget,
                    "model": None if best is None else best["model"],
                    "depth": None if best is None else int(best["depth"]),
                    self.measure: np.nan if best is None else best[self.measure],
                    "mean_ms": np.nan if best is None else best["mean_ms"],
                }
            )
        return pd.DataFrame(rows)

    def describe(self) -> str:
        """A sentence on what was measured, to print beside the table."""
        return (
            f"{self.measure} over {self.effectiveness_queries} queries; latency per query (first stage + reranking, "
            f"queries one at a time, after warm-up) on a sample of {self.latency_queries} queries"
        )


def sweep(
    first_stage: pt.Transformer,
    rerankers: Mapping[str, pt.Transformer | Cascade],
    topics: pd.DataFrame,
    qrels: pd.DataFrame,
    *,
    text_loader: pt.Transformer | None = None,
    depths: Sequence[int] | None = None,
    measure=None,
    latency_queries: int | None = 20,
    warmup: int = 2,
    seed: int = 0,
    verbose: bool = False,
) -> SweepResult:
    """Measures effectiveness and latency of each reranker at each rerank depth k.

    At depth k a query's top k first-stage candidates are reranked and the rest follow below them in first-stage
    order. A pair's score does not depend on k, so effectiveness at every depth comes from one scoring pass over the
    deepest k (an anchored reranker's mix with the first stage is then taken over each depth's candidates alone);
    latency is measured for every (reranker, k), queries one at a time, on a random sample of the topics. A
    :class:`Cascade` reranks the order its earlier reranker gives all the candidates, at every depth.

    Example::

        result = sweep(bm25, {"2 layers": CrossEncoder(m2), "6 layers": CrossEncoder(m6)}, topics, qrels,
                       text_loader=TextLoader(dataset), depths=depth_grid(1000))
        result.budget_table([10, 50, 200])

    Args:
        first_stage: The retriever; it must return at least as many candidates as the deepest k.
        rerankers: Named rerankers of (``query``, ``text``) rows, or :class:`Cascade` s of two.
        topics: The queries (``qid``, ``query``).
        qrels: The relevance judgements.
        text_loader: Attaches ``text`` to the candidates (``None`` when the first stage already returns it).
        depths: The rerank depths (default: :func:`depth_grid` up to 1000).
        measure: An ``ir_measures`` measure (default nDCG@10).
        latency_queries: How many queries to time (``None``: all).
        warmup: Untimed queries before each latency measurement.
        seed: Seeds the choice of timed queries.
        verbose: Show progress bars.
    """
    measure = pt.measures.nDCG @ 10 if measure is None else measure
    depths = sorted(set(depth_grid(1000) if depths is None else depths))
    if not depths or depths[0] < 1:
        raise ValueError(f"depths must be positive integers, got {depths}")
    if not rerankers:
        raise ValueError("sweep needs at least one reranker")
    require_columns(topics, ["qid", "query"], who="sweep")
    if len(topics) == 0:
        raise ValueError("sweep: the topics frame is empty")
    require_str_ids(topics, ["qid"], who="sweep")
    require_columns(qrels, ["qid", "docno", "label"], who="sweep")
    qrels = qrels[qrels["qid"].isin(set(topics["qid"]))]  # queries without results would count as 0
    if len(qrels) == 0:
        raise ValueError("sweep: no qrels for any of the topics")
    text = text_loader if text_loader is not None else pt.Transformer.identity()
    retrieved = first_stage % depths[-1] >> text
    candidates = first_stage_order(retrieved(topics))

    rows = [{"model": FIRST_STAGE, "depth": 0, str(measure): _evaluate(candidates, qrels, measure)}]
    for name, entry in rerankers.items():
        reranker = entry.reranker if isinstance(entry, Cascade) else entry
        ordered = _earlier_order(entry.before, candidates, name) if isinstance(entry, Cascade) else candidates
        head, qids = positions(ordered), ordered["qid"].to_numpy()
        anchoring = getattr(reranker, "anchoring", None)
        first_scores = anchor_inputs(ordered, anchoring, who="sweep")
        scores = without_anchor(reranker)(ordered)
        scores = ordered[["qid", "docno"]].merge(scores[["qid", "docno", "score"]], how="left")["score"]
        for depth in depths:
            reranked = head < depth
            depth_scores = scores.to_numpy()
            if anchoring is not None:  # z-scores over the top `depth` candidates, as `% depth >> reranker` gives
                depth_scores = depth_scores.copy()
                depth_scores[reranked] = anchoring.combine(qids[reranked], first_scores[reranked],
                                                           depth_scores[reranked])
            run = merge_reranked(ordered, reranked, depth_scores)
            rows.append({"model": name, "depth": depth, str(measure): _evaluate(run, qrels, measure)})
    table = pd.DataFrame(rows)

    sample = topics if latency_queries is None else topics.sample(min(latency_queries, len(topics)), random_state=seed)
    latency = {(FIRST_STAGE, 0): measure_latency(first_stage, sample, warmup=warmup)}
    plan = [(name, depth) for depth in depths for name in rerankers]  # models alternate at each depth
    for name, depth in pt.tqdm(plan, desc="sweep latency", unit="setting", disable=not verbose):
        entry = rerankers[name]
        if isinstance(entry, Cascade):  # the earlier stage counts in the first stage's time
            stages = (retrieved >> entry.before, pt.RankCutoff(depth) >> entry.reranker)
        else:
            stages = (first_stage, pt.RankCutoff(depth) >> text >> entry)
        latency[name, depth] = measure_latency(stages[0], sample, reranker=stages[1], warmup=warmup)
    settings = list(zip(table["model"], table["depth"], strict=True))
    for column in ("mean_ms", "p50_ms", "p95_ms", "rerank_ms"):
        table[column] = [_latency_value(latency[setting], column) for setting in settings]
    queries = candidates["qid"].nunique()
    return SweepResult(table=table, measure=str(measure), effectiveness_queries=queries, latency_queries=len(sample))


def _earlier_order(before: pt.Transformer, candidates: pd.DataFrame, name: str) -> pd.DataFrame:
    """The candidates in the order a cascade's earlier reranker gives them, checked to be all of them."""
    ordered = before(candidates)
    require_columns(ordered, ["qid", "docno", "score"], who=f"sweep: {name}'s earlier reranker")
    if len(ordered) != len(candidates):
        raise ValueError(f"sweep: {name}'s earlier reranker returned {len(ordered)} of {len(candidates)} candidates; "
                         "it must rerank them all")
    return first_stage_order(ordered)


def _latency_value(report, column: str) -> float:
    summary = report.summary().set_index("stage")
    if column == "rerank_ms":
        return float(summary.loc["rerank", "mean_ms"])
    return float(summary.loc["total", column])


def _evaluate(run: pd.DataFrame, qrels: pd.DataFrame, measure) -> float:
    return float(pt.Evaluate(run, qrels, metrics=[measure])[str(measure)])
