import itertools
import json
import pickle
import warnings

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest

import pyterrier_shallow.dense as dense
from pyterrier_shallow.datasets import vaswani

NUM_DOCS = 600


@pytest.fixture(scope="module")
def model():
    return dense.BiEncoder(warn_truncation=False)


@pytest.fixture(scope="module")
def corpus():
    """The first 600 real Vaswani abstracts."""
    return list(itertools.islice(vaswani().get_corpus_iter(), NUM_DOCS))


@pytest.fixture(scope="module")
def topics():
    return vaswani().get_topics().head(20)


@pytest.fixture(scope="module")
def flat(model, corpus, tmp_path_factory):
    path = tmp_path_factory.mktemp("flat") / "vaswani.faiss"
    return dense.FaissIndex(path).indexer(model, chunk_size=256, verbose=False).index(iter(corpus))


@pytest.fixture(scope="module")
def encoded(flat, corpus):
    """The corpus with its vectors (as the flat index stores them exactly), for every other index built from it."""
    vectors = flat.faiss_index().reconstruct_n(0, len(corpus))
    return [{**doc, "doc_vec": vector} for doc, vector in zip(corpus, vectors)]


@pytest.fixture(scope="module")
def approximate(encoded, tmp_path_factory):
    built = {}
    for index_type in ("hnsw", "ivfpq"):
        path = tmp_path_factory.mktemp(index_type) / "vaswani.faiss"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "IVF-PQ trained on 600 documents")  # asserted below
            built[index_type] = dense.FaissIndex(path).indexer(index_type=index_type, verbose=False).index(encoded)
    return built


@pytest.fixture(scope="module")
def query_vectors(model, topics):
    return model.encode_queries(topics["query"].tolist())


def _exact_top_k(encoded, query_vectors, k):
    matrix = np.stack([doc["doc_vec"] for doc in encoded])
    scores = query_vectors @ matrix.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def test_artifact_layout(flat, model):
    meta = json.loads((flat.path / "pt_meta.json").read_text())
    assert (meta["type"], meta["format"], meta["index_type"]) == ("dense_index", "faiss", "flat")
    assert (meta["model"], meta["dimension"], meta["num_docs"]) == (model.name, 384, NUM_DOCS)
    assert {p.name for p in flat.path.iterdir()} == {"pt_meta.json", "index.faiss", "docnos.npy"}
    assert not [p for p in flat.path.parent.iterdir() if p.name.startswith(".")]  # no temporary directory left
    assert len(flat) == NUM_DOCS


def test_exact_search_equals_numpy_top_k(flat, encoded, topics, query_vectors, model):
    results = flat.retriever(model, num_results=10)(topics)
    order, scores = _exact_top_k(encoded, query_vectors, 10)
    docnos = np.array([doc["docno"] for doc in encoded])
    for row, (qid, group) in enumerate(results.groupby("qid", sort=False)):
        assert qid == topics["qid"].iloc[row]
        np.testing.assert_allclose(group["score"].to_numpy(), scores[row], atol=1e-5)
        distinct = np.abs(np.diff(scores[row])) > 1e-5  # ties may come in either order
        same = group["docno"].to_numpy()[:-1][distinct] == docnos[order[row]][:-1][distinct]
        assert same.all()


def test_results_frame_contract(flat, topics, model):
    frame = topics.head(3).assign(extra=[1, 2, 3])
    results = flat.retriever(model, num_results=7)(frame)
    assert list(results.columns) == [*frame.columns, "docid", "docno", "score", "rank"]
    assert results["score"].dtype == np.float32
    assert results.groupby("qid").size().tolist() == [7, 7, 7]
    assert results.groupby("qid")["rank"].apply(list).tolist() == [list(range(7))] * 3
    assert (results.groupby("qid")["score"].diff().dropna() <= 0).all()
    assert results["docno"].map(type).eq(str).all()
    docnos = flat.docnos()
    assert [docnos[i].decode() for i in results["docid"]] == results["docno"].tolist()


def test_query_vectors_are_searched_directly(flat, topics, model):
    with_vectors = model.query_encoder()(topics.head(3))
    direct = flat.retriever(num_results=5)(with_vectors)
    encoded_here = flat.retriever(model, num_results=5)(topics.head(3))
    assert direct["docno"].tolist() == encoded_here["docno"].tolist()


def test_rank_cutoff_is_pushed_into_the_search(flat, topics, model):
    pipeline = flat.retriever(model, num_results=100) % 5
    compiled = pipeline.compile()
    assert type(compiled).__name__ == "FaissRetriever" and compiled.num_results == 5
    assert pipeline(topics.head(2)).groupby("qid").size().tolist() == [5, 5]
    retriever = flat.retriever(model, num_results=3)
    assert retriever.fuse_rank_cutoff(10) is retriever


@pytest.mark.parametrize(("index_type", "floor"), [("hnsw", 0.9), ("ivfpq", 0.3)])
def test_approximate_recall_against_exact(approximate, encoded, query_vectors, index_type, floor, topics):
    index = approximate[index_type]
    assert index.meta["index_type"] == index_type and len(index) == NUM_DOCS
    results = index.retriever(num_results=100)(topics.assign(query_vec=list(query_vectors)))
    order, _ = _exact_top_k(encoded, query_vectors, 100)
    docnos = np.array([doc["docno"] for doc in encoded])
    recalls = [
        len(set(group["docno"]) & set(docnos[order[row]])) / 100
        for row, (_, group) in enumerate(results.groupby("qid", sort=False))
    ]
    assert np.mean(recalls) >= floor  # a sanity floor; benchmarks/bench_faiss.py reports the measured recall


def test_ivfpq_is_trained_on_a_sample(encoded, tmp_path):
    index = dense.FaissIndex(tmp_path / "ivfpq").indexer(index_type="ivfpq", train_size=300, chunk_size=128)
    with pytest.warns(UserWarning, match="IVF-PQ trained on 300 documents; FAISS advises at least 9984"):
        built = index.index(encoded)
    options = built.meta["index_options"]
    assert options["train_size"] == 300 and options["nlist"] == 300 // 39 and options["pq_m"] == 96
    assert built.faiss_index().is_trained and built.faiss_index().ntotal == NUM_DOCS


def test_ivfpq_needs_enough_training_documents(encoded, tmp_path):
    with pytest.raises(ValueError, match="needs at least 256 training documents"):
        dense.FaissIndex(tmp_path / "small").indexer(index_type="ivfpq", verbose=False).index(encoded[:100])
    assert not (tmp_path / "small").exists()


def test_indexer_streams_in_chunks(model, corpus, tmp_path, capsys):
    sizes, read_ahead = [], []

    class RecordingBiEncoder(dense.BiEncoder):
        def encode_docs(self, texts, **kwargs):
            sizes.append(len(texts))
            read_ahead.append(len(pulled))
            return super().encode_docs(texts, **kwargs)

    pulled = []

    def stream():
        for doc in corpus[:120]:
            pulled.append(doc["docno"])
            yield doc

    indexer = dense.FaissIndex(tmp_path / "x").indexer(RecordingBiEncoder(batch_size=8), chunk_size=50, verbose=True)
    indexer.index(stream())
    assert sizes == [50, 50, 20]
    assert "120doc" in capsys.readouterr().err  # the progress bar counts encoded documents
    assert read_ahead == [50, 100, 120]  # one chunk is read at a time


def test_reopened_and_unpickled_retrievers_agree(flat, topics, model):
    retriever = flat.retriever(model, num_results=10)
    expected = retriever(topics.head(4))
    reopened = dense.FaissIndex(flat.path).retriever(model, num_results=10)(topics.head(4))
    pd.testing.assert_frame_equal(reopened, expected)
    payload = pickle.dumps(retriever)
    assert len(payload) < 100_000  # neither the FAISS index nor the model weights are pickled
    pd.testing.assert_frame_equal(pickle.loads(payload)(topics.head(4)), expected)


def test_encoder_pipeline_into_indexer(model, corpus, flat, tmp_path):
    pipeline = model.doc_encoder() >> dense.FaissIndex(tmp_path / "piped").indexer(verbose=False)
    built = pipeline.index(corpus[:40])
    assert len(built) == 40 and built.meta["model"] is None
    vectors = built.faiss_index().reconstruct_n(0, 40)
    np.testing.assert_allclose(vectors, flat.faiss_index().reconstruct_n(0, 40), atol=1e-6)
    np.testing.assert_allclose(vectors, model.encode_docs([doc["text"] for doc in corpus[:40]]), atol=1e-6)


def test_dimension_mismatch_is_explained(flat, tmp_path, topics):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from pyterrier_shallow._hf import minilm_path

    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(tmp_path / "small")
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(tmp_path / "small")
    with pytest.raises(ValueError, match="makes 32-dimensional vectors.*384-dimensional"):
        flat.retriever(dense.BiEncoder(tmp_path / "small"))
    with pytest.raises(ValueError, match="query vectors have 3 dimensions"):
        flat.retriever()(topics.head(1).assign(query_vec=[np.ones(3, dtype=np.float32)]))


def test_another_model_of_the_same_size_is_warned_about(flat, tmp_path):
    from sentence_transformers import SentenceTransformer

    from pyterrier_shallow._hf import minilm_path

    SentenceTransformer(str(minilm_path()), device="cpu").save(str(tmp_path / "copy"))
    with pytest.warns(UserWarning, match="was built with 'sentence-transformers/all-MiniLM-L6-v2' but is queried"):
        flat.retriever(dense.BiEncoder(tmp_path / "copy"))


def test_missing_and_half_written_indexes(tmp_path, model):
    with pytest.raises(FileNotFoundError, match="no FaissIndex"):
        dense.FaissIndex(tmp_path / "nothing").retriever(model)
    half = tmp_path / "half"
    half.mkdir()
    (half / "index.faiss").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="not a complete FaissIndex.*pt_meta.json"):
        dense.FaissIndex(half).retriever(model)


def test_interrupted_build_leaves_nothing(model, corpus, tmp_path):
    def failing():
        yield from corpus[:30]
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        dense.FaissIndex(tmp_path / "idx").indexer(model, chunk_size=10, verbose=False).index(failing())
    assert list(tmp_path.iterdir()) == []


def test_existing_index_is_kept_unless_overwritten(encoded, tmp_path):
    path = tmp_path / "idx"
    dense.FaissIndex(path).indexer(verbose=False).index(encoded[:40])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        dense.FaissIndex(path).indexer(verbose=False).index(encoded[:50])
    assert len(dense.FaissIndex(path)) == 40
    existing = dense.FaissIndex(path)
    assert len(existing) == 40
    assert len(existing.indexer(overwrite=True, verbose=False).index(encoded[:50])) == 50
    assert len(existing) == 50  # the object forgets the replaced index
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]


@pytest.mark.parametrize(
    ("documents", "match"),
    [
        (lambda docs: docs[:20] + docs[5:6], r"duplicate docno\(s\) \['6'\]"),
        (lambda docs: [{**docs[0], "docno": 7}], "docno 7"),
        (lambda docs: [{"docno": "1", "body": "x"}], r"no str 'text'.*\['body', 'docno'\]"),
        (lambda docs: [{"docno": "1", "text": float("nan")}], "found float"),
        (lambda docs: [], "corpus is empty"),
    ],
)
def test_bad_documents(model, corpus, tmp_path, documents, match):
    with pytest.raises(ValueError, match=match):
        dense.FaissIndex(tmp_path / "idx").indexer(model, verbose=False).index(documents(corpus))
    assert list(tmp_path.iterdir()) == []


def test_duplicate_docnos_across_chunks(encoded, tmp_path):
    documents = encoded[:30] + [{**encoded[40], "docno": encoded[3]["docno"]}]
    with pytest.raises(ValueError, match=r"duplicate docno\(s\) \['4'\]"):
        dense.FaissIndex(tmp_path / "idx").indexer(chunk_size=8, verbose=False).index(documents)
    assert list(tmp_path.iterdir()) == []


def test_bad_queries(flat, model, topics):
    retriever = flat.retriever(model)
    with pytest.raises(ValueError, match="appear more than once"):
        retriever(pd.concat([topics.head(2), topics.head(1)]))
    with pytest.raises(ValueError, match="already has"):
        retriever(topics.head(2).assign(docno="1"))
    with pytest.raises(KeyError, match="query"):
        retriever(topics[["qid"]])
    with pytest.raises(TypeError, match="'qid' must hold str"):
        retriever(topics.head(2).assign(qid=[1, 2]))
    with pytest.raises(ValueError, match="empty 'query'"):
        retriever(topics.head(1).assign(query=""))
    with pytest.raises(ValueError, match="nprobe applies to IVF-PQ"):
        flat.retriever(model, nprobe=4)
    with pytest.raises(ValueError, match="num_results"):
        flat.retriever(model, num_results=0)


def test_search_options_per_type(approximate, topics, query_vectors):
    frame = topics.head(3).assign(query_vec=list(query_vectors[:3]))
    with pytest.raises(ValueError, match="ef_search applies to HNSW"):
        approximate["ivfpq"].retriever(ef_search=10)
    narrow = approximate["ivfpq"].retriever(nprobe=1, num_results=50)(frame)
    wide = approximate["ivfpq"].retriever(nprobe=10_000, num_results=50)(frame)  # capped at nlist: all lists
    assert len(wide) == 150 and len(narrow) <= 150
    hnsw = approximate["hnsw"].retriever(ef_search=16, num_results=200)(frame)
    assert len(hnsw) == 600  # ef_search is raised to num_results


def test_single_threaded_search(flat, model, topics):
    import faiss

    threads = faiss.omp_get_max_threads()
    expected = flat.retriever(model, num_results=10)(topics.head(3))
    pd.testing.assert_frame_equal(flat.retriever(model, num_results=10, threads=1)(topics.head(3)), expected)
    assert faiss.omp_get_max_threads() == threads  # restored after the search
    with pytest.raises(ValueError, match="threads"):
        flat.retriever(model, threads=0)


def test_empty_query_frame(flat, model):
    out = flat.retriever(model)(pd.DataFrame(columns=["qid", "query"]))
    assert len(out) == 0 and list(out.columns) == ["qid", "query", "docid", "docno", "score", "rank"]


def test_more_results_than_documents(approximate, topics, query_vectors):
    out = approximate["hnsw"].retriever(num_results=5000)(topics.head(1).assign(query_vec=[query_vectors[0]]))
    assert len(out) == NUM_DOCS and out["rank"].tolist() == list(range(NUM_DOCS))


def test_unknown_index_type(model, tmp_path):
    with pytest.raises(ValueError, match="unknown index_type"):
        dense.FaissIndex(tmp_path / "x").indexer(model, index_type="lsh")


class TestFaissRetrieverContract(pt.testing.TransformerTestCase):
    @staticmethod
    def get_transformer():
        import tempfile

        documents = list(itertools.islice(vaswani().get_corpus_iter(), 20))
        model = dense.BiEncoder()
        path = f"{tempfile.mkdtemp()}/contract.faiss"
        return dense.FaissIndex(path).indexer(model, verbose=False).index(documents).retriever(model)
