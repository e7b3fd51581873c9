import numpy as np
import pyterrier as pt
import pytest
from _budget_helpers import vaswani_stage

import pyterrier_shallow as pts
from pyterrier_shallow.budget import latency_stats, measure_latency


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    return vaswani_stage(tmp_path_factory.mktemp("bm25"), num_results=20)


class _Counting(pt.Transformer):
    """Passes frames on, counting the queries it sees (to check warm-up and one-query-at-a-time serving)."""

    def __init__(self):
        self.sizes = []

    def transform(self, inp):
        self.sizes.append(inp["qid"].nunique())
        return inp


def test_first_stage_and_reranking_are_timed_apart_query_by_query(stage, shallow_checkpoint):
    dataset, retriever, text = stage
    topics = dataset.get_topics().head(4)
    counting = _Counting()
    reranker = pt.RankCutoff(5) >> counting >> text >> pts.CrossEncoder(shallow_checkpoint)
    report = measure_latency(retriever, topics, reranker=reranker, warmup=2)
    per_query = report.per_query
    assert per_query["qid"].tolist() == topics["qid"].tolist()
    assert counting.sizes == [1] * 6  # two warm-up queries, then the four timed ones, each alone
    assert (per_query[["first_stage_ms", "rerank_ms"]] > 0).all().all()
    assert np.allclose(per_query["total_ms"], per_query["first_stage_ms"] + per_query["rerank_ms"])
    assert (per_query["candidates"] == 20).all()
    summary = report.summary().set_index("stage")
    assert list(summary.index) == ["first_stage", "rerank", "total"]
    assert summary.loc["total", "mean_ms"] == pytest.approx(report.mean_ms)
    assert summary.loc["rerank", "p50_ms"] == pytest.approx(per_query["rerank_ms"].median())
    assert (summary["queries"] == 4).all() and report.warmup == 2


def test_a_whole_pipeline_can_be_timed_alone(stage):
    dataset, retriever, _ = stage
    report = measure_latency(retriever % 3, dataset.get_topics().head(3), warmup=0, max_queries=2)
    assert len(report.per_query) == 2
    assert (report.per_query["rerank_ms"] == 0).all() and (report.per_query["candidates"] == 3).all()


def test_latency_stats():
    stats = latency_stats(np.arange(1, 101))
    assert stats == {"mean_ms": 50.5, "p50_ms": 50.5, "p95_ms": pytest.approx(95.05)}
    assert np.isnan(latency_stats(np.array([]))["mean_ms"])


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda t: t.head(0), ValueError, "empty"),
        (lambda t: t.drop(columns=["query"]), KeyError, "query"),
        (lambda t: t.assign(qid=t["qid"].astype(int)), TypeError, "qid"),
        (lambda t: t.assign(qid="1"), ValueError, "duplicate"),
    ],
)
def test_bad_topics_get_a_clear_error(stage, change, error, match):
    dataset, retriever, _ = stage
    with pytest.raises(error, match=match):
        measure_latency(retriever, change(dataset.get_topics().head(3)))


def test_bad_options_are_refused(stage):
    dataset, retriever, _ = stage
    with pytest.raises(ValueError, match="warmup"):
        measure_latency(retriever, dataset.get_topics().head(2), warmup=-1)
    with pytest.raises(ValueError, match="max_queries"):
        measure_latency(retriever, dataset.get_topics().head(2), max_queries=0)
