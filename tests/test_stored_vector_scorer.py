"""FaissIndex.scorer: BM25's candidates scored with the vectors a dense index stores, as the bi-encoder would."""

import itertools
import pickle

import numpy as np
import pandas as pd
import pytest
from _ranking import assert_fresh_ranks

import pyterrier_shallow as pts
from pyterrier_shallow.datasets import vaswani


@pytest.fixture(scope="module")
def encoder():
    return pts.BiEncoder(warn_truncation=False, doc_length=128)


@pytest.fixture(scope="module")
def corpus():
    return list(itertools.islice(vaswani().get_corpus_iter(), 40))


@pytest.fixture(scope="module")
def index(encoder, corpus, tmp_path_factory):
    path = tmp_path_factory.mktemp("stored") / "vaswani.faiss"
    return pts.FaissIndex(path).indexer(encoder, verbose=False).index(iter(corpus))


@pytest.fixture(scope="module")
def candidates(corpus):
    topics = vaswani().get_topics().head(2)
    rows = [(qid, query, doc["docno"], doc["text"]) for qid, query in topics[["qid", "query"]].values
            for doc in corpus[:20]]
    return pd.DataFrame(rows, columns=["qid", "query", "docno", "text"]).assign(extra="kept")


def test_scores_equal_the_bi_encoders(encoder, index, candidates):
    scored = index.scorer(encoder)(candidates)
    expected = encoder.text_scorer()(candidates)
    np.testing.assert_allclose(scored["score"], expected["score"], atol=1e-5)
    assert scored["score"].dtype == np.float32 and (scored["extra"] == "kept").all()
    assert_fresh_ranks(scored)


def test_bad_input_and_edge_cases(encoder, index, candidates):
    scorer = index.scorer(encoder)
    assert len(scorer(candidates.head(0))) == 0
    with pytest.raises(KeyError, match="not in"):
        scorer(candidates.assign(docno="absent"))
    with pytest.raises(ValueError, match="query"):
        scorer(candidates.assign(query=""))
    with pytest.raises(KeyError, match="docno"):
        scorer(candidates.drop(columns=["docno"]))
    with pytest.raises(TypeError):
        scorer(candidates.assign(qid=np.arange(len(candidates))))


def test_pickles_and_compares_by_arguments(encoder, index, candidates):
    scorer = index.scorer(encoder)
    assert scorer == index.scorer(encoder) and scorer.index == index and scorer.encoder is encoder
    clone = pickle.loads(pickle.dumps(scorer))
    np.testing.assert_allclose(clone(candidates)["score"], scorer(candidates)["score"], atol=1e-6)


def test_another_models_index_is_an_error(index):
    from pyterrier_shallow._hf import minilm_path

    with pytest.raises(ValueError, match="was built with"):
        index.scorer(pts.BiEncoder(str(minilm_path())))
