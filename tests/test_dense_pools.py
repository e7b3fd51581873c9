"""Dense candidate pools for distillation: dense retrieval's candidates with BM25's score of each attached."""

import itertools

import numpy as np
import pytest

import pyterrier_shallow as pts
from pyterrier_shallow.bm25 import bm25
from pyterrier_shallow.datasets import vaswani
from pyterrier_shallow.train import HybridTeacher
from pyterrier_shallow.train.dense_pools import BM25_COLUMN, dense_candidates_with_bm25, dense_index_of


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
    work = tmp_path_factory.mktemp("pools")
    docs = {doc["docno"]: doc["text"] for doc in itertools.islice(vaswani().get_corpus_iter(), 300)}
    encoder = pts.BiEncoder(warn_truncation=False, doc_length=64)
    index = dense_index_of(docs, work / "dense", encoder)
    assert dense_index_of(docs, work / "dense", encoder).built()  # found again, not rebuilt
    lexical = bm25(({"docno": docno, "text": text} for docno, text in docs.items()), work / "bm25", num_results=20)
    topics = vaswani().get_topics().head(4)
    candidates = dense_candidates_with_bm25(index.retriever(encoder, num_results=30), lexical, topics, docs, depth=30)
    return candidates, lexical(topics), encoder


def test_every_dense_candidate_gets_a_bm25_score(pools):
    candidates, lexical, _ = pools
    assert candidates.groupby("qid").size().eq(30).all()
    assert candidates[BM25_COLUMN].notna().all() and candidates["text"].str.len().gt(0).all()
    merged = candidates.merge(lexical[["qid", "docno", "score"]], on=["qid", "docno"], suffixes=("", "_bm25"))
    assert len(merged) > 0  # some dense candidates are BM25's too, with BM25's very score
    np.testing.assert_allclose(merged[BM25_COLUMN], merged["score_bm25"], rtol=1e-6)
    floor = lexical.groupby("qid")["score"].min()
    unmatched = candidates[~candidates.set_index(["qid", "docno"]).index.isin(merged.set_index(["qid", "docno"]).index)]
    np.testing.assert_allclose(unmatched[BM25_COLUMN], unmatched["qid"].map(floor), rtol=1e-6)


def test_the_hybrid_teacher_mixes_bm25_into_dense_candidates(pools):
    candidates, _, encoder = pools
    scored = HybridTeacher(encoder, first_stage_column=BM25_COLUMN)(candidates)
    assert scored["score"].dtype == np.float32 and np.isfinite(scored["score"]).all()
    dense_only = HybridTeacher(encoder, dense_weight=1.0, first_stage_column=BM25_COLUMN)(
        candidates.assign(**{BM25_COLUMN: 0.0}))
    assert not np.allclose(scored.sort_values(["qid", "docno"])["score"],
                           dense_only.sort_values(["qid", "docno"])["score"])
