import itertools

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest

import pyterrier_shallow.dense as dense
from pyterrier_shallow.bm25 import bm25
from pyterrier_shallow.datasets import vaswani


@pytest.fixture(scope="module")
def retrievers(tmp_path_factory):
    """BM25 (PISA) and dense (FAISS, all-MiniLM-L6-v2) over the first 200 real Vaswani abstracts."""
    corpus = list(itertools.islice(vaswani().get_corpus_iter(), 200))
    root = tmp_path_factory.mktemp("fusion")
    model = dense.BiEncoder(warn_truncation=False)
    faiss_index = dense.FaissIndex(root / "dense").indexer(model, verbose=False).index(corpus)
    return bm25(corpus, root / "bm25", num_results=20), faiss_index.retriever(model, num_results=20)


@pytest.fixture(scope="module")
def topics():
    return vaswani().get_topics().head(6)


def _normalised(results, how):
    groups = results.groupby("qid")["score"]
    if how == "zscore":
        return (results["score"] - groups.transform("mean")) / groups.transform("std", ddof=0)
    return (results["score"] - groups.transform("min")) / (groups.transform("max") - groups.transform("min"))


@pytest.mark.parametrize("how", ["zscore", "minmax"])
def test_interpolation_of_normalised_scores(retrievers, topics, how):
    sparse, dense_retriever = retrievers
    fused = dense.ScoreFusion(sparse, dense_retriever, weights=[1.0, 2.0], normalize=how)(topics)
    runs = []
    for retriever in retrievers:
        results = retriever(topics)
        runs.append(results.assign(norm=_normalised(results, how))[["qid", "docno", "norm"]])
    merged = runs[0].merge(runs[1], on=["qid", "docno"], how="outer", suffixes=("_s", "_d"))
    for column in ("norm_s", "norm_d"):  # a document one run missed gets that run's lowest score for the query
        merged[column] = merged[column].fillna(merged.groupby("qid")[column].transform("min"))
    merged["expected"] = merged["norm_s"] + 2.0 * merged["norm_d"]
    joined = fused.merge(merged, on=["qid", "docno"])
    assert len(joined) == len(fused) == len(merged)
    np.testing.assert_allclose(joined["score"], joined["expected"], rtol=1e-5, atol=1e-5)
    assert fused["score"].dtype == np.float32
    assert len(merged) > len(runs[0])  # the union is larger than either run: the runs differ


def test_reciprocal_rank_fusion(retrievers, topics):
    fused = dense.ScoreFusion(*retrievers, normalize="rrf", rrf_k=60)(topics)
    expected = {}
    for retriever in retrievers:
        for row in retriever(topics).itertuples():
            expected[row.qid, row.docno] = expected.get((row.qid, row.docno), 0.0) + 1 / (60 + row.rank + 1)
    assert len(fused) == len(expected)
    for row in fused.itertuples():
        assert row.score == pytest.approx(expected[row.qid, row.docno], rel=1e-5)


def test_output_contract(retrievers, topics):
    frame = topics.assign(extra=range(len(topics)))
    fused = dense.ScoreFusion(*retrievers, num_results=15)(frame)
    assert list(fused.columns) == [*frame.columns, "docno", "score", "rank"]
    assert fused.groupby("qid").size().max() == 15
    assert fused["qid"].unique().tolist() == frame["qid"].tolist()
    for _, group in fused.groupby("qid"):
        assert group["rank"].tolist() == list(range(len(group)))
        assert group["score"].is_monotonic_decreasing


def test_rank_cutoff_is_pushed(retrievers, topics):
    pipeline = dense.ScoreFusion(*retrievers) % 4
    assert pipeline.compile().num_results == 4
    assert pipeline(topics).groupby("qid").size().max() == 4


def test_empty_frame(retrievers):
    out = dense.ScoreFusion(*retrievers)(pd.DataFrame(columns=["qid", "query"]))
    assert len(out) == 0 and {"docno", "score", "rank"} <= set(out.columns)


def test_bad_arguments(retrievers, topics):
    with pytest.raises(ValueError, match="at least two"):
        dense.ScoreFusion(retrievers[0])
    with pytest.raises(ValueError, match="2 weights for 3"):
        dense.ScoreFusion(*retrievers, retrievers[0], weights=[1, 2])
    with pytest.raises(ValueError, match="unknown normalize"):
        dense.ScoreFusion(*retrievers, normalize="softmax")
    with pytest.raises(KeyError, match="qid"):
        dense.ScoreFusion(*retrievers)(topics.drop(columns=["qid"]))


class TestScoreFusionContract(pt.testing.TransformerTestCase):
    @staticmethod
    def get_transformer():
        import tempfile

        corpus = list(itertools.islice(vaswani().get_corpus_iter(), 20))
        model = dense.BiEncoder()
        index = dense.FaissIndex(f"{tempfile.mkdtemp()}/contract").indexer(model, verbose=False).index(corpus)
        return dense.ScoreFusion(index.retriever(model, num_results=5), index.retriever(model, num_results=10))
