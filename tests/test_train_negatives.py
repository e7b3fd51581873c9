import gzip
import warnings

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
from pyterrier_pisa import PisaIndex

from pyterrier_shallow import datasets
from pyterrier_shallow.train import NegativePool, positives_by_query


@pytest.fixture(scope="module")
def vaswani():
    return datasets.vaswani()


@pytest.fixture(scope="module")
def bm25(vaswani, tmp_path_factory):
    index = PisaIndex(str(tmp_path_factory.mktemp("vaswani") / "index"), text_field="text", threads=1)
    index.index(vaswani.get_corpus_iter())
    return index.bm25(num_results=50)


@pytest.fixture(scope="module")
def topics(vaswani):
    return vaswani.get_topics().iloc[:5].reset_index(drop=True)


@pytest.fixture(scope="module")
def qrels(vaswani):
    return vaswani.get_qrels()


@pytest.fixture(scope="module")
def corpus_docnos(vaswani):
    return [doc["docno"] for doc in vaswani.get_corpus_iter()]


def _failing_stage():
    def fail(frame):
        raise AssertionError("the first stage ran although its rankings were cached")

    return pt.apply.generic(fail)


def test_pools_are_the_rankings_minus_judged_relevant(bm25, topics, qrels):
    pool = NegativePool.mine(bm25, topics, qrels, depth=50)
    relevant = positives_by_query(qrels)
    ranking = bm25.transform(topics)
    for qid in topics["qid"]:
        expected = [d for d in ranking[ranking["qid"] == qid].sort_values("rank")["docno"] if d not in relevant[qid]]
        assert pool.pool(qid) == expected
        assert pool.pool_size(qid) == len(expected) >= 25
        assert not set(pool.pool(qid)) & set(relevant[qid])


def test_sampling_is_distinct_seeded_and_from_the_pool(bm25, topics, qrels):
    pool = NegativePool.mine(bm25, topics, qrels, depth=50)
    qid = topics["qid"][0]
    negatives, size = pool.sample(qid, 8, np.random.default_rng(3))
    assert size == pool.pool_size(qid)
    assert len(set(negatives)) == 8 and set(negatives) <= set(pool.pool(qid))
    again, _ = pool.sample(qid, 8, np.random.default_rng(3))
    other, _ = pool.sample(qid, 8, np.random.default_rng(4))
    assert again == negatives and other != negatives
    deep = NegativePool.mine(bm25, topics, qrels, depth=50, sample_depth=10)
    assert deep.pool(qid) == pool.pool(qid)[:10]
    assert set(deep.sample(qid, 10, np.random.default_rng(0))[0]) == set(pool.pool(qid)[:10])


def test_short_pools_are_topped_up_with_random_corpus_documents(bm25, topics, qrels, corpus_docnos):
    pool = NegativePool.mine(bm25, topics, qrels, depth=3, corpus_docnos=corpus_docnos)
    qid = topics["qid"][1]
    negatives, size = pool.sample(qid, 12, np.random.default_rng(0))
    assert size == 12  # alpha = 1 when the whole pool is used
    assert negatives[: len(pool.pool(qid))] == pool.pool(qid)
    assert len(set(negatives)) == 12
    assert set(negatives) <= set(corpus_docnos)
    assert not set(negatives) & set(positives_by_query(qrels)[qid])
    with pytest.raises(ValueError, match="corpus_docnos"):
        NegativePool.mine(bm25, topics, qrels, depth=3).sample(qid, 12, np.random.default_rng(0))


def test_query_without_results_gets_random_negatives(bm25, qrels, corpus_docnos):
    topics = pd.DataFrame({"qid": ["1"], "query": ["the of and"]})  # stopwords only: BM25 finds nothing
    pool = NegativePool.mine(bm25, topics, qrels, depth=50, corpus_docnos=corpus_docnos)
    assert pool.pool_size("1") == 0
    negatives, size = pool.sample("1", 4, np.random.default_rng(0))
    assert len(set(negatives)) == 4 and size == 4


def test_cache_is_reused_only_for_the_same_first_stage_and_topics(bm25, topics, qrels, tmp_path):
    first = NegativePool.mine(bm25, topics, qrels, depth=50, cache_dir=tmp_path, key="bm25-vaswani")
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.endswith(".json.gz")
    cached = NegativePool.mine(_failing_stage(), topics, qrels, depth=50, cache_dir=tmp_path, key="bm25-vaswani")
    assert all(cached.pool(qid) == first.pool(qid) for qid in topics["qid"])
    # another first stage, depth or topic set is a different cache entry, never the stale one
    with pytest.raises(AssertionError, match="cached"):
        NegativePool.mine(_failing_stage(), topics, qrels, depth=50, cache_dir=tmp_path, key="bm25-other")
    with pytest.raises(AssertionError, match="cached"):
        NegativePool.mine(_failing_stage(), topics, qrels, depth=20, cache_dir=tmp_path, key="bm25-vaswani")
    with pytest.raises(AssertionError, match="cached"):
        NegativePool.mine(_failing_stage(), topics.iloc[:4], qrels, depth=50, cache_dir=tmp_path, key="bm25-vaswani")
    # without a key the first stage's repr names it
    NegativePool.mine(bm25, topics, qrels, depth=50, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2
    assert not [path for path in tmp_path.iterdir() if path.name.endswith(".tmp")]


def test_corrupt_cache_is_mined_again(bm25, topics, qrels, tmp_path):
    NegativePool.mine(bm25, topics, qrels, depth=50, cache_dir=tmp_path, key="k")
    (path,) = tmp_path.iterdir()
    path.write_bytes(gzip.compress(b"{not json")[:10])
    with pytest.warns(UserWarning, match="unreadable negatives cache"):
        pool = NegativePool.mine(bm25, topics, qrels, depth=50, cache_dir=tmp_path, key="k")
    assert pool.pool_size(topics["qid"][0]) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NegativePool.mine(_failing_stage(), topics, qrels, depth=50, cache_dir=tmp_path, key="k")


def test_unstable_repr_warns(topics, qrels, tmp_path):
    class Stage(pt.Transformer):
        def transform(self, inp):
            return pd.DataFrame({"qid": inp["qid"], "docno": "1", "score": 1.0, "rank": 0})

    with pytest.warns(UserWarning, match="memory address"):
        NegativePool.mine(Stage(), topics, qrels, depth=5, cache_dir=tmp_path)


def test_bad_inputs(bm25, topics, qrels):
    with pytest.raises(KeyError, match="query"):
        NegativePool.mine(bm25, topics[["qid"]], qrels)
    with pytest.raises(TypeError, match="qid"):
        NegativePool.mine(bm25, topics.assign(qid=range(len(topics))), qrels)
    with pytest.raises(ValueError, match="empty"):
        NegativePool.mine(bm25, topics.iloc[:0], qrels)
    with pytest.raises(ValueError, match="duplicate"):
        NegativePool.mine(bm25, pd.concat([topics, topics.iloc[:1]]), qrels)
    with pytest.raises(KeyError, match="label"):
        NegativePool.mine(bm25, topics, qrels.drop(columns=["label"]))
    with pytest.raises(TypeError, match="docno"):
        NegativePool.mine(bm25, topics, qrels.assign(docno=qrels["docno"].astype(int)))
    pool = NegativePool.mine(bm25, topics, qrels, depth=5)
    with pytest.raises(ValueError, match="k must be"):
        pool.sample(topics["qid"][0], 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="sample_depth"):
        NegativePool({}, sample_depth=0)
