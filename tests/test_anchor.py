"""Anchored scores: the first stage's score mixed into a reranker's own as per-query z-scores."""

import json
import pickle

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
from _budget_helpers import vaswani_stage

import pyterrier_shallow as pts
from pyterrier_shallow.anchor import ANCHOR_FILE, Anchor, flat_queries, per_query_zscores
from pyterrier_shallow.budget import BudgetedReranker, TokenCostModel, sweep
from pyterrier_shallow.gated import init_gated_cross_encoder
from pyterrier_shallow.sparse import SparseCrossEncoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LENGTHS = {"query_length": 64, "doc_length": 400}  # long enough that no Vaswani text is truncated


def _zscores_by_hand(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Per-query z-scores written out with pandas, apart from the package's implementation."""
    grouped = frame.groupby("qid")[column]
    return ((frame[column] - grouped.transform("mean")) / grouped.transform(lambda g: g.std(ddof=0))).to_numpy()


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    """BM25's top 8 for 4 Vaswani queries (the bundled collection), with text."""
    dataset, retriever, text = vaswani_stage(tmp_path_factory.mktemp("bm25"), num_results=8)
    return (retriever >> text)(dataset.get_topics().head(4))


@pytest.fixture(scope="module")
def closed_gates(tmp_path_factory):
    """A warm-started 6-layer gated cross-encoder whose gates are closed: it scores as 20 times the cosine."""
    return init_gated_cross_encoder(None, tmp_path_factory.mktemp("gated") / "closed")


def test_zscores_are_standardised_per_query_and_zero_without_spread():
    qids = ["a", "b", "a", "b", "a", "c", "d", "d"]
    values = [1.0, 10.0, 2.0, 30.0, 6.0, 5.0, 7.0, 7.0]
    z = per_query_zscores(qids, values)
    frame = pd.DataFrame({"qid": qids, "v": values})
    for qid in ("a", "b"):
        rows = frame["qid"].eq(qid).to_numpy()
        assert z[rows].mean() == pytest.approx(0, abs=1e-12) and z[rows].std() == pytest.approx(1)
        np.testing.assert_allclose(z[rows], _zscores_by_hand(frame, "v")[rows])
    assert z[5] == 0 and (z[6:] == 0).all()  # one candidate; equal scores
    assert flat_queries(qids, values) == 2  # exactly the queries whose z-scores are 0


def test_anchor_checks_its_weights():
    for bad in ({"first_stage": -1}, {"model": float("nan")}, {"first_stage": 0, "model": 0}, {"model": True},
                {"normalisation": "minmax"}):
        with pytest.raises(ValueError, match="Anchor"):
            Anchor(**bad)


def test_closed_gates_with_the_anchor_score_as_the_untrained_hybrid(closed_gates, candidates):
    anchored = pts.CrossEncoder(closed_gates, anchor=True, warn_truncation=False, **LENGTHS)
    assert anchored.anchoring == Anchor(source="equal weights")
    out = anchored(candidates)
    cosine = pts.BiEncoder(warn_truncation=False, **LENGTHS).text_scorer()(candidates)
    both = candidates.merge(cosine[["qid", "docno", "score"]], on=["qid", "docno"], suffixes=("", "_cos"))
    hybrid = _zscores_by_hand(both, "score") + _zscores_by_hand(both, "score_cos")
    merged = out.merge(both.assign(hybrid=hybrid)[["qid", "docno", "hybrid"]], on=["qid", "docno"])
    np.testing.assert_allclose(merged["score"], merged["hybrid"], atol=1e-4)
    # the bi-encoder's own anchored scorer is the same hybrid
    text_hybrid = pts.BiEncoder(warn_truncation=False, **LENGTHS).text_scorer(anchor=True)(candidates)
    merged = merged.merge(text_hybrid[["qid", "docno", "score"]], on=["qid", "docno"], suffixes=("", "_bi"))
    np.testing.assert_allclose(merged["score"], merged["score_bi"], atol=1e-4)


def test_the_weights_round_trip_through_the_model_folder(closed_gates, candidates, tmp_path):
    anchor = Anchor(first_stage=0.7, model=1.3, source="chosen by validation")
    path = anchor.save(closed_gates)
    try:
        assert json.loads(path.read_text())["first_stage"] == 0.7
        assert Anchor.load(closed_gates) == anchor
        loaded = pts.CrossEncoder(closed_gates, warn_truncation=False, **LENGTHS)
        assert loaded.anchoring == anchor and loaded.anchor is None
        assert pickle.loads(pickle.dumps(loaded)).anchoring == anchor
        assert pts.CrossEncoder(closed_gates, anchor=False).anchoring is None
        assert pts.CrossEncoder(closed_gates, anchor=True).anchoring == anchor  # the folder's mix
        sparse = SparseCrossEncoder.from_cross_encoder(loaded, window=None)
        assert sparse.anchoring == anchor
        raw = pts.CrossEncoder(closed_gates, anchor=False, warn_truncation=False, **LENGTHS)(candidates)
        out = loaded(candidates)
        both = candidates.merge(raw[["qid", "docno", "score"]], on=["qid", "docno"], suffixes=("", "_model"))
        expected = 0.7 * _zscores_by_hand(both, "score") + 1.3 * _zscores_by_hand(both, "score_model")
        merged = out.merge(both.assign(expected=expected)[["qid", "docno", "expected"]], on=["qid", "docno"])
        np.testing.assert_allclose(merged["score"], merged["expected"], atol=1e-4)
        path.write_text('{"first_stage": "a lot"}')
        with pytest.raises(ValueError, match="not a valid anchor"):
            pts.CrossEncoder(closed_gates)
    finally:
        (closed_gates / ANCHOR_FILE).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def hybrid():
    return pts.BiEncoder(warn_truncation=False, **LENGTHS).text_scorer(anchor=True)


def test_a_frame_without_a_usable_first_stage_score_gets_a_clear_error(hybrid, candidates):
    with pytest.raises(KeyError, match="no `score` column.*anchor=False"):
        hybrid(candidates.drop(columns=["score"]))
    with pytest.raises(ValueError, match="missing or infinite"):
        hybrid(candidates.assign(score=candidates["score"].where(candidates["rank"] != 2)))
    with pytest.raises(ValueError, match="missing or infinite"):
        hybrid(candidates.assign(score=np.where(candidates["rank"] == 1, np.inf, candidates["score"])))
    with pytest.raises(TypeError, match="must hold numbers"):
        hybrid(candidates.assign(score=candidates["score"].astype(str)))


def test_degenerate_first_stage_scores_fall_back_to_the_model(hybrid, candidates):
    cosine = pts.BiEncoder(warn_truncation=False, **LENGTHS).text_scorer()
    flat = hybrid(candidates.assign(score=1.0))  # a constant first stage has no order: the cosine decides
    assert flat.sort_values(["qid", "rank"])["docno"].tolist() == \
        cosine(candidates).sort_values(["qid", "rank"])["docno"].tolist()
    single = hybrid(candidates[candidates["rank"] == 0])  # one candidate a query: z-scores of 0, never NaN
    assert (single["score"] == 0).all() and (single["rank"] == 0).all()
    assert hybrid(candidates.head(0)).empty


def test_z_scores_are_taken_over_the_candidates_the_stage_is_given(hybrid, candidates):
    top3 = candidates[candidates["rank"] < 3]
    out = hybrid(top3)
    assert len(out) == len(top3) and np.isfinite(out["score"]).all()
    assert out["score"].dtype == np.float32
    for _, group in out.groupby("qid"):
        assert abs(group["score"].sum()) < 1e-4  # both z-scores sum to 0 over the 3 candidates of each query


def test_budgeted_anchored_reranker_keeps_the_tail_in_first_stage_order(closed_gates, candidates):
    anchored = pts.CrossEncoder(closed_gates, anchor=True, warn_truncation=False, **LENGTHS)
    budgeted = BudgetedReranker(anchored, budget_ms=1e9, max_depth=4, adapt=False,
                                cost_model=TokenCostModel(overhead_ms=0.0, ms_per_token=1e-9))
    out = budgeted(candidates)
    for qid, rows in out.groupby("qid"):
        rows = rows.sort_values("rank")
        first = candidates[candidates["qid"] == qid].sort_values("rank")
        expected_head = anchored(first.head(4)).sort_values("rank")["docno"].tolist()
        assert rows.head(4)["docno"].tolist() == expected_head
        assert rows.iloc[4:]["docno"].tolist() == first.iloc[4:]["docno"].tolist()
        assert rows.iloc[4:]["score"].max() < rows.head(4)["score"].min()
    with pytest.raises(KeyError, match="no `score` column"):
        budgeted(candidates.drop(columns=["score"]))


def test_the_sweep_mixes_each_depth_as_the_pipeline_does(tmp_path):
    dataset, retriever, text = vaswani_stage(tmp_path / "bm25", num_results=10)
    topics, qrels = dataset.get_topics().head(6), dataset.get_qrels()
    hybrid = pts.BiEncoder(warn_truncation=False).text_scorer(anchor=True)
    result = sweep(retriever, {"hybrid": hybrid}, topics, qrels, text_loader=text, depths=[4, 10],
                   latency_queries=1, warmup=0)
    table = result.table.set_index(["model", "depth"])["nDCG@10"]
    qrels = qrels[qrels["qid"].isin(topics["qid"])]
    for depth in (4, 10):
        head = (retriever % depth >> text >> hybrid)(topics)
        tail = retriever(topics).assign(score=lambda f: -1e3 - f["rank"])
        run = pd.concat([head, tail[~tail.set_index(["qid", "docno"]).index.isin(head.set_index(["qid", "docno"])
                                                                                  .index)]])
        expected = pt.Evaluate(run, qrels, metrics=[pt.measures.nDCG @ 10])["nDCG@10"]
        assert table["hybrid", depth] == pytest.approx(expected, abs=1e-6)


def test_the_poly_encoder_anchors_too(candidates, tmp_path):
    poly = pts.PolyEncoder()
    assert poly.text_scorer().anchoring == Anchor.load(poly.path)  # the shipped poly-encoder's own mix
    plain = poly.text_scorer(anchor=False)(candidates)
    anchored = poly.text_scorer(anchor=Anchor(first_stage=2.0, model=1.0))(candidates)
    both = candidates.merge(plain[["qid", "docno", "score"]], on=["qid", "docno"], suffixes=("", "_poly"))
    expected = 2.0 * _zscores_by_hand(both, "score") + _zscores_by_hand(both, "score_poly")
    merged = anchored.merge(both.assign(expected=expected)[["qid", "docno", "expected"]], on=["qid", "docno"])
    np.testing.assert_allclose(merged["score"], merged["expected"], atol=1e-4)
