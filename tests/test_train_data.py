import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
from pyterrier_pisa import PisaIndex

from pyterrier_shallow import CrossEncoder, datasets
from pyterrier_shallow.train import (
    DistillationSource,
    MixedSource,
    NegativePool,
    PairsSource,
    RankingSource,
    docs_from_corpus,
    first_stage_candidates,
    positives_by_query,
    pseudo_queries,
    pseudo_query_source,
    score_with_teacher,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture(scope="module")
def vaswani():
    return datasets.vaswani()


@pytest.fixture(scope="module")
def vaswani_docs(vaswani):
    return docs_from_corpus(vaswani.get_corpus_iter())


@pytest.fixture(scope="module")
def bm25(vaswani, tmp_path_factory):
    index = PisaIndex(str(tmp_path_factory.mktemp("vaswani") / "index"), text_field="text", threads=1)
    index.index(vaswani.get_corpus_iter())
    return index.bm25(num_results=100)


@pytest.fixture(scope="module")
def cranfield(shared_data):
    return datasets.get("cranfield", root=shared_data)


def test_ranking_source_from_a_dataset(vaswani, vaswani_docs, bm25, tmp_path):
    source = RankingSource.from_dataset(vaswani, None, bm25, depth=100, cache_dir=tmp_path)
    qrels = vaswani.get_qrels()
    relevant = positives_by_query(qrels)
    topics = vaswani.get_topics().set_index("qid")["query"]
    assert len(source) == len(relevant) == 93
    rng = np.random.default_rng(0)
    for _ in range(5):
        group = source.sample(rng, 6)
        qid = topics.index[topics == group.query][0]
        assert len(group.texts) == 7
        assert group.texts[0] in {vaswani_docs[docno] for docno in relevant[qid]}
        assert group.pool_size >= 6 and group.teacher_scores is None
    described = source.describe()
    assert described["queries"] == 93 and described["documents"] == len(vaswani_docs)
    assert described["positives"] == int((qrels["label"] > 0).sum())


def test_ranking_source_drops_queries_without_positives(vaswani, vaswani_docs, bm25):
    topics = vaswani.get_topics().iloc[:4]
    qrels = vaswani.get_qrels()
    qrels = qrels[qrels["qid"] != topics["qid"].iloc[0]]
    pool = NegativePool.mine(bm25, topics, qrels, depth=20, corpus_docnos=list(vaswani_docs))
    source = RankingSource(topics, qrels, vaswani_docs, pool)
    assert len(source) == 3
    with pytest.raises(ValueError, match="no query has a judged-relevant document"):
        RankingSource(topics, qrels.iloc[:0], vaswani_docs, pool)
    with pytest.raises(ValueError, match="duplicate qids"):
        RankingSource(pd.concat([topics, topics]), qrels, vaswani_docs, pool)
    with pytest.raises(ValueError, match="empty 'query'"):
        RankingSource(topics.assign(query=""), qrels, vaswani_docs, pool)


def test_pairs_source_from_wikiqa(shared_data):
    wikiqa = datasets.get("wikiqa", root=shared_data)
    source = PairsSource.from_dataset(wikiqa, "train")
    qrels = wikiqa.get_qrels("train")
    assert len(source) == qrels[qrels["label"] > 0]["qid"].nunique()
    pairs = wikiqa.get_results("train").merge(qrels, on=["qid", "docno"])
    by_query = {query: group for query, group in pairs.groupby("query")}
    rng = np.random.default_rng(1)
    for k in (2, 40):  # 40 is more than any question's own candidates: topped up from other questions
        group = source.sample(rng, k)
        candidates = by_query[group.query]
        own_negatives = set(candidates.loc[candidates["label"] == 0, "text"])
        assert group.texts[0] in set(candidates.loc[candidates["label"] == 1, "text"])
        assert len(group.texts) == k + 1 and len(set(group.texts)) == k + 1
        if k == 2 and len(own_negatives) >= 2:
            assert set(group.texts[1:]) <= own_negatives and group.pool_size == len(own_negatives)
        if k == 40:
            assert own_negatives <= set(group.texts[1:]) and group.pool_size == 40


def test_pairs_source_bad_input():
    pairs = pd.DataFrame({"qid": ["1", "1", "2"], "query": ["a b", "a b", "c"], "text": ["x", "y", "z"],
                          "label": [1, 0, 0]})
    assert len(PairsSource(pairs)) == 1
    with pytest.raises(KeyError, match="label"):
        PairsSource(pairs.drop(columns=["label"]))
    with pytest.raises(ValueError, match="empty"):
        PairsSource(pairs.iloc[:0])
    with pytest.raises(ValueError, match="missing or non-string 'text'"):
        PairsSource(pairs.assign(text=["x", None, "z"]))
    with pytest.raises(TypeError, match="qid"):
        PairsSource(pairs.assign(qid=[1, 1, 2]))
    with pytest.raises(ValueError, match="label must be numeric"):
        PairsSource(pairs.assign(label=["1", "0", "0"]))
    with pytest.raises(ValueError, match="no query has a pair"):
        PairsSource(pairs.assign(label=0))
    with pytest.raises(ValueError, match="too few texts"):
        PairsSource(pairs).sample(np.random.default_rng(0), 5)


def test_docs_from_corpus_checks():
    assert docs_from_corpus([{"docno": "a", "text": "x"}]) == {"a": "x"}
    with pytest.raises(ValueError, match="duplicate docno"):
        docs_from_corpus([{"docno": "a", "text": "x"}, {"docno": "a", "text": "y"}])
    with pytest.raises(ValueError, match="docno must be a str"):
        docs_from_corpus([{"docno": 1, "text": "x"}])
    with pytest.raises(ValueError, match="non-string"):
        docs_from_corpus([{"docno": "a", "text": float("nan")}])
    with pytest.warns(UserWarning, match="dropping 1 document"):
        assert docs_from_corpus([{"docno": "a", "text": "x"}, {"docno": "b", "text": " "}]) == {"a": "x"}
    with pytest.raises(ValueError, match="no documents"):
        docs_from_corpus([])


def test_mixed_source_follows_its_weights(vaswani, vaswani_docs, bm25):
    topics = vaswani.get_topics()
    qrels = vaswani.get_qrels()
    pool = NegativePool.mine(bm25, topics, qrels, depth=20, corpus_docnos=list(vaswani_docs))
    first = RankingSource(topics.iloc[:10], qrels, vaswani_docs, pool, name="first")
    second = RankingSource(topics.iloc[10:], qrels, vaswani_docs, pool, name="second")
    first_queries = set(topics["query"].iloc[:10])
    rng = np.random.default_rng(0)
    only_first = MixedSource([first, second], [1.0, 0.0])
    assert all(only_first.sample(rng, 3).query in first_queries for _ in range(20))
    by_size = MixedSource([first, second])
    drawn = [by_size.sample(rng, 3).query in first_queries for _ in range(200)]
    assert 0.03 < np.mean(drawn) < 0.2  # 10 of 93 queries
    described = by_size.describe()
    assert [part["name"] for part in described["sources"]] == ["first", "second"]
    assert described["sources"][0]["probability"] == pytest.approx(10 / 93)
    with pytest.raises(ValueError, match="weights"):
        MixedSource([first, second], [0.0, 0.0])
    with pytest.raises(ValueError, match="2 sources but 1 weights"):
        MixedSource([first, second], [1.0])


def test_pseudo_queries_from_titles_and_first_sentences(cranfield):
    corpus = list(cranfield.get_corpus_iter())
    topics, qrels, docs = pseudo_queries(corpus, mode="title")
    by_docno = {doc["docno"]: doc for doc in corpus}
    assert len(topics) > 1000 and list(qrels["label"].unique()) == [1]
    for qid, query, docno in zip(topics["qid"][:20], topics["query"][:20], qrels["docno"][:20], strict=True):
        assert qid == f"pseudo-{docno}"
        assert query == datasets.safe_query(by_docno[docno]["title"])
        assert docs[docno] == by_docno[docno]["text"]
    topics, qrels, docs = pseudo_queries(corpus, mode="first_sentence", max_queries=50, seed=1)
    assert len(topics) == 50
    for query, docno in zip(topics["query"], qrels["docno"], strict=True):
        text = by_docno[docno]["text"]
        first, rest = text[: len(text) - len(docs[docno])], docs[docno]  # the body is what follows the query
        assert text.endswith(rest) and first.rstrip().endswith((".", "?", "!"))
        assert datasets.safe_query(first) == query
    with pytest.raises(ValueError, match="mode"):
        pseudo_queries(corpus, mode="abstract")
    with pytest.raises(ValueError, match="no document gave a pseudo-query"):
        pseudo_queries([{"docno": "1", "text": "one two three four five six seven eight nine ten eleven"}])


def test_pseudo_query_source_indexes_once(cranfield, tmp_path):
    corpus = list(cranfield.get_corpus_iter())
    source = pseudo_query_source(corpus, tmp_path, mode="title", depth=20, max_queries=30)
    assert len(source) == 30
    group = source.sample(np.random.default_rng(0), 5)
    assert len(group.texts) == 6 and group.pool_size >= 5
    indexes = sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("bodies-"))
    assert len(indexes) == 1
    again = pseudo_query_source(corpus, tmp_path, mode="title", depth=20, max_queries=30)
    assert len(again) == 30
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("bodies-")) == indexes


def test_distillation_source_with_a_cross_encoder_teacher(vaswani, vaswani_docs, bm25, shallow_checkpoint, tmp_path):
    teacher = CrossEncoder(str(shallow_checkpoint), batch_size=16, query_length=16, doc_length=48,
                           warn_truncation=False)
    topics = vaswani.get_topics().iloc[:3]
    candidates = first_stage_candidates(bm25, topics, vaswani_docs, depth=6)
    scored = score_with_teacher(teacher, candidates, cache_dir=tmp_path, key="teacher")
    direct = teacher.transform(candidates).set_index(["qid", "docno"])["score"]
    expected = direct.loc[list(zip(scored["qid"], scored["docno"], strict=True))].to_numpy()
    np.testing.assert_allclose(scored["teacher_score"].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    cached = score_with_teacher(pt.apply.generic(lambda frame: 1 / 0), candidates, cache_dir=tmp_path, key="teacher")
    np.testing.assert_array_equal(cached["teacher_score"].to_numpy(), scored["teacher_score"].to_numpy())

    source = DistillationSource(scored)
    assert len(source) == 3
    rng = np.random.default_rng(0)
    for _ in range(5):
        group = source.sample(rng, 3)
        assert len(group.texts) == 4 and group.pool_size == 5
        assert group.teacher_scores[0] == max(group.teacher_scores)
        lookup = scored[scored["query"] == group.query].set_index("text")["teacher_score"]
        assert [float(lookup[text]) for text in group.texts] == pytest.approx(group.teacher_scores)
    with pytest.raises(ValueError, match="no query has 7 candidates"):
        source.sample(rng, 6)
    with pytest.raises(ValueError, match="non-finite"):
        DistillationSource(scored.assign(teacher_score=np.nan))
    with pytest.raises(ValueError, match="duplicate"):
        score_with_teacher(teacher, pd.concat([candidates, candidates.iloc[:1]]))
