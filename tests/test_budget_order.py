import numpy as np
import pandas as pd
import pytest

from pyterrier_shallow.budget._order import first_stage_order, merge_reranked, positions


def _frame():
    return pd.DataFrame(
        {
            "qid": ["q2", "q1", "q2", "q1", "q1", "q2"],
            "docno": ["c", "a", "d", "b", "e", "f"],
            "rank": [1, 2, 0, 0, 1, 2],
            "score": [5.0, 1.0, 9.0, 3.0, 2.0, 4.0],
            "extra": ["x1", "x2", "x3", "x4", "x5", "x6"],
        }
    )


def test_first_stage_order_follows_rank_then_score_then_rows():
    by_rank = first_stage_order(_frame())
    assert by_rank["qid"].tolist() == ["q2", "q2", "q2", "q1", "q1", "q1"]  # queries in order of appearance
    assert by_rank["docno"].tolist() == ["d", "c", "f", "b", "e", "a"]
    by_score = first_stage_order(_frame().drop(columns=["rank"]).assign(score=[1.0, 3.0, 2.0, 1.0, 2.0, 0.5]))
    assert by_score["docno"].tolist() == ["d", "c", "f", "a", "e", "b"]
    by_rows = first_stage_order(_frame().drop(columns=["rank", "score"]))
    assert by_rows["docno"].tolist() == ["c", "d", "f", "a", "b", "e"]
    assert positions(by_rows).tolist() == [0, 1, 2, 0, 1, 2]


def test_merge_reranks_the_head_and_keeps_the_tail_in_first_stage_order():
    ordered = first_stage_order(_frame())  # q2: d c f, q1: b e a
    head = np.array([True, True, False, True, False, False])
    scores = np.array([-3.0, 7.0, np.nan, 0.5, np.nan, np.nan])
    out = merge_reranked(ordered, head, scores)
    assert out["docno"].tolist() == ["c", "d", "f", "b", "e", "a"]
    assert out["rank"].tolist() == [0, 1, 2, 0, 1, 2]
    assert out["score"].dtype == np.float32
    assert set(out.columns) == set(ordered.columns)
    assert out.set_index("docno").loc[["c", "d", "b"], "extra"].tolist() == ["x1", "x3", "x4"]
    for _, rows in out.groupby("qid"):
        assert (np.diff(rows["score"].to_numpy()) < 0).all()  # strictly decreasing: no ties in the tail


def test_merge_with_no_head_keeps_the_first_stage_order():
    ordered = first_stage_order(_frame())
    out = merge_reranked(ordered, np.zeros(6, dtype=bool), np.full(6, np.nan))
    assert out["docno"].tolist() == ordered["docno"].tolist()


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_merge_at_every_depth_places_every_row_once(k):
    ordered = first_stage_order(_frame())
    scores = np.array([1.0, 2.0, 3.0, 3.0, 2.0, 1.0])
    out = merge_reranked(ordered, positions(ordered) < k, scores)
    assert sorted(out["docno"]) == sorted(ordered["docno"])
    for qid, rows in out.groupby("qid", sort=False):
        first = ordered[ordered["qid"] == qid]
        head = first.head(k).sort_values("docno")["docno"].tolist()
        assert sorted(rows.head(k)["docno"]) == head
        assert rows.iloc[k:]["docno"].tolist() == first.iloc[k:]["docno"].tolist()
