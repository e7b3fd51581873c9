import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
from _budget_helpers import vaswani_stage

import pyterrier_shallow as pts
from pyterrier_shallow.budget import BudgetedReranker, TokenCostModel

GENEROUS = TokenCostModel(overhead_ms=0.0, ms_per_token=1e-9)  # everything fits any budget
IMPOSSIBLE = TokenCostModel(overhead_ms=1e12, ms_per_token=1.0)  # nothing fits


@pytest.fixture(scope="module")
def cross_encoder(shallow_checkpoint):
    return pts.CrossEncoder(shallow_checkpoint, max_length=256, warn_truncation=False)


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    """BM25's top 12 for 3 Vaswani queries, with text, in a shuffled row order."""
    dataset, retriever, text = vaswani_stage(tmp_path_factory.mktemp("bm25"), num_results=12)
    frame = (retriever >> text)(dataset.get_topics().head(3))
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)


def _budgeted(ce, cost_model, *, budget_ms=100, **options):
    return BudgetedReranker(
        ce, budget_ms=budget_ms, cost_model=TokenCostModel(**vars(cost_model)), adapt=False, **options
    )


def test_a_generous_budget_reranks_everything_like_the_cross_encoder(cross_encoder, candidates):
    out = _budgeted(cross_encoder, GENEROUS, budget_ms=1e9)(candidates)  # wall-clock time can never use it up
    expected = cross_encoder(candidates).sort_values(["qid", "rank"])
    merged = out.merge(expected[["qid", "docno", "score"]], on=["qid", "docno"], suffixes=("", "_ce"))
    assert len(merged) == len(candidates)
    # the same scores (batching may move them by float rounding, so near-ties are compared by value, not rank)
    np.testing.assert_allclose(merged["score"], merged["score_ce"], atol=1e-5)
    for _, group in out.groupby("qid"):
        assert group.sort_values("rank")["score"].is_monotonic_decreasing


def test_an_impossible_budget_keeps_the_first_stage_order(cross_encoder, candidates):
    reranker = _budgeted(cross_encoder, IMPOSSIBLE)
    out = reranker(candidates)
    for qid, rows in out.groupby("qid"):
        first = candidates[candidates["qid"] == qid].sort_values("rank")
        assert rows.sort_values("rank")["docno"].tolist() == first["docno"].tolist()
    assert (reranker.log["depth"] == 0).all()
    assert len(reranker.log) == 3


@pytest.mark.parametrize(
    ("cost_model", "options", "depth"),
    [(GENEROUS, {"max_depth": 5, "budget_ms": 1e9}, 5), (IMPOSSIBLE, {"min_depth": 3}, 3)],
)
def test_the_head_is_reranked_and_the_tail_follows_in_first_stage_order(
    cross_encoder, candidates, cost_model, options, depth
):
    reranker = _budgeted(cross_encoder, cost_model, **options)
    out = reranker(candidates)
    assert (reranker.log["depth"] == depth).all()
    for qid, rows in out.groupby("qid"):
        rows = rows.sort_values("rank")
        first = candidates[candidates["qid"] == qid].sort_values("rank")
        head = first.head(depth)
        assert set(rows.head(depth)["docno"]) == set(head["docno"])
        expected_head = cross_encoder(head).sort_values("rank")["docno"].tolist()
        assert rows.head(depth)["docno"].tolist() == expected_head
        assert rows.iloc[depth:]["docno"].tolist() == first.iloc[depth:]["docno"].tolist()
        assert rows.iloc[depth:]["score"].max() < rows.head(depth)["score"].min()


def test_the_depth_shrinks_with_longer_texts_and_smaller_budgets(cross_encoder, candidates, nfcorpus_pairs):
    reranker = _budgeted(cross_encoder, TokenCostModel(overhead_ms=1.0, ms_per_token=0.01))
    short = candidates.sort_values(["qid", "rank"]).head(10)
    long = nfcorpus_pairs.head(10)
    short_lengths = reranker.pair_lengths(short["query"].tolist(), short["text"].tolist())
    long_lengths = reranker.pair_lengths(long["query"].tolist(), long["text"].tolist())
    assert np.median(long_lengths) > 2 * np.median(short_lengths)  # real texts: NFCorpus abstracts vs Vaswani
    budget = 1.0 + 0.01 * short_lengths.sum()  # exactly all ten short pairs
    assert reranker.depth_for(short_lengths, budget / (1 - reranker.headroom)) == 10
    assert reranker.depth_for(long_lengths, budget / (1 - reranker.headroom)) < 10
    depths = [reranker.depth_for(long_lengths, ms) for ms in (200, 20, 10, 1)]
    assert depths == sorted(depths, reverse=True) and depths[0] > depths[-1] == 0


def test_online_updates_follow_the_measured_speed(cross_encoder, candidates):
    reranker = BudgetedReranker(cross_encoder, budget_ms=1e6, cost_model=TokenCostModel(0.0, 1e-6))
    reranker(candidates)
    log = reranker.log
    assert reranker.cost_model.ms_per_token > 1e-6  # the optimistic start was corrected by real timings
    assert (log["scoring_ms"] > 0).all() and (log["total_ms"] >= log["scoring_ms"]).all()
    assert log["tokens"].gt(0).all() and (log["depth"] == log["candidates"]).all()


def test_calibrates_itself_on_the_first_query(cross_encoder, candidates):
    reranker = BudgetedReranker(cross_encoder, budget_ms=1e6)
    assert reranker.cost_model is None
    with pytest.raises(RuntimeError, match="no cost model"):
        reranker.depth_for(np.array([10]), 10)
    out = reranker(candidates)
    assert reranker.cost_model is not None and reranker.cost_model.ms_per_token > 0
    assert len(out) == len(candidates)


def test_warmup_fits_the_cost_model_before_the_first_query(cross_encoder, candidates):
    reranker = BudgetedReranker(cross_encoder, budget_ms=1e6)
    assert reranker.warmup() is reranker  # on the bundled Vaswani collection
    fitted = reranker.cost_model
    assert fitted is not None and fitted.ms_per_token > 0
    assert reranker.warmup() is reranker and reranker.cost_model is fitted  # once only
    other = BudgetedReranker(cross_encoder, budget_ms=1e6).warmup(candidates)
    assert other.cost_model.ms_per_token > 0
    with pytest.raises(KeyError, match="warmup needs the column"):
        BudgetedReranker(cross_encoder, budget_ms=1e6).warmup(candidates.drop(columns=["text"]))


def test_contract(cross_encoder, candidates):
    reranker = _budgeted(cross_encoder, GENEROUS)
    empty = reranker(candidates.head(0))
    assert len(empty) == 0 and {"score", "rank"} <= set(empty.columns)
    out = reranker(candidates)
    assert set(candidates.columns) <= set(out.columns)
    assert out["score"].dtype == np.float32
    assert out.groupby("qid")["rank"].apply(lambda ranks: sorted(ranks) == list(range(len(ranks)))).all()


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda df: df.drop(columns=["text"]), KeyError, "text"),
        (lambda df: df.assign(qid=df["qid"].astype(int)), TypeError, "qid"),
        (lambda df: pd.concat([df, df.head(1)]), ValueError, "duplicate"),
        (lambda df: df.assign(text=[None] + df["text"].tolist()[1:]), ValueError, "missing or non-string"),
        (lambda df: df.assign(query=""), ValueError, "empty 'query'"),
        (lambda df: df.assign(score="high"), TypeError, "'score' must hold numbers"),
        (lambda df: df.assign(rank=[[1, 2]] * len(df)), TypeError, "'rank' must hold numbers"),
        (lambda df: df.assign(rank=df["rank"] > 3), TypeError, "'rank' must hold numbers"),
        (lambda df: df.assign(score=[np.nan] + df["score"].tolist()[1:]), ValueError, "'score' misses 1 value"),
    ],
)
def test_bad_input_gets_a_clear_error(cross_encoder, candidates, change, error, match):
    with pytest.raises(error, match=match):
        _budgeted(cross_encoder, GENEROUS)(change(candidates))


def test_bad_options_are_refused(cross_encoder):
    with pytest.raises(TypeError, match="CrossEncoder"):
        BudgetedReranker(pt.Transformer.identity(), budget_ms=10)
    with pytest.raises(ValueError, match="budget_ms"):
        BudgetedReranker(cross_encoder, budget_ms=0)
    with pytest.raises(ValueError, match="headroom"):
        BudgetedReranker(cross_encoder, budget_ms=10, headroom=1.0)
    with pytest.raises(ValueError, match="min_depth"):
        BudgetedReranker(cross_encoder, budget_ms=10, min_depth=5, max_depth=2)


class TestBudgetedRerankerContract(pt.testing.TransformerTestCase):
    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.checkpoint, ignore_errors=True)

    @classmethod
    def get_transformer(cls):
        from conftest import _build_shallow_checkpoint

        cls.checkpoint = _build_shallow_checkpoint(Path(tempfile.mkdtemp()), num_labels=1)
        return BudgetedReranker(pts.CrossEncoder(cls.checkpoint), budget_ms=50, cost_model=GENEROUS)


def test_a_huge_candidate_costs_only_the_tokens_it_keeps(cross_encoder, candidates):
    """A 100,000-character first candidate is cut to what the model reads before it is tokenised and timed."""
    huge = candidates.copy()
    first = huge.sort_values(["qid", "rank"]).groupby("qid").head(1).index
    huge.loc[first, "text"] = "the measurement of dielectric constants of liquids " * 2000
    reranker = _budgeted(cross_encoder, GENEROUS)
    lengths = reranker.pair_lengths(huge.loc[first, "query"].tolist(), huge.loc[first, "text"].tolist())
    assert (lengths == 256).all()  # what the model reads: max_length tokens
    out = reranker(huge)
    assert (reranker.log["tokens"] > 0).all()
    assert set(out["docno"]) == set(huge["docno"])
