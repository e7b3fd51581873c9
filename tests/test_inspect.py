"""PyTerrier can see inside every public transformer: ``pt.inspect`` reads each constructor argument, and a
transformer rebuilt from them with ``transformer_apply_attributes`` gives the same results."""

import pandas as pd
import pyterrier as pt
import pytest

import pyterrier_shallow as pts
from pyterrier_shallow import budget, datasets
from pyterrier_shallow.bm25 import bm25

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vaswani():
    return datasets.vaswani()


@pytest.fixture(scope="module")
def docs(vaswani):
    return [doc for doc, _ in zip(vaswani.get_corpus_iter(), range(60))]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("inspect")


@pytest.fixture(scope="module")
def bi_encoder():
    return pts.BiEncoder(doc_length=64, warn_truncation=False)


@pytest.fixture(scope="module")
def faiss_index(work, docs, bi_encoder):
    index = pts.FaissIndex(work / "slice.faiss")
    index.indexer(bi_encoder).index(iter(docs))
    return index


@pytest.fixture(scope="module")
def bm25_slice(work, docs):
    return bm25(docs, work / "bm25")


@pytest.fixture(scope="module")
def queries():
    return pd.DataFrame({"qid": ["1", "2"], "query": ["dielectric constant of liquids", "transistor amplifier"]})


@pytest.fixture(scope="module")
def candidates(bm25_slice, vaswani, queries):
    return (bm25_slice % 5 >> pts.TextLoader(vaswani))(queries)


def _transformers(name, *, vaswani, docs, bi_encoder, faiss_index, bm25_slice, checkpoint):
    """Each public transformer, as a user builds it."""
    poly = pts.PolyEncoder()
    build = {
        "CrossEncoder": lambda: pts.CrossEncoder(checkpoint, batch_size=4, warn_truncation=False),
        "SparseCrossEncoder": lambda: pts.SparseCrossEncoder(checkpoint, window=2, warn_truncation=False),
        "SparseCrossEncoder.from_cross_encoder": lambda: pts.SparseCrossEncoder.from_cross_encoder(
            pts.CrossEncoder(checkpoint, warn_truncation=False), window=3),
        "TextLoader(dataset)": lambda: pts.TextLoader(vaswani),
        "TextLoader(iterator)": lambda: pts.TextLoader(iter(docs)),
        "BM25Retriever": lambda: bm25_slice,
        "BiEncoder.text_scorer": lambda: bi_encoder.text_scorer(),
        "BiEncoder.text_scorer(anchor)": lambda: bi_encoder.text_scorer(anchor=True),
        "CrossEncoder(anchor)": lambda: pts.CrossEncoder(checkpoint, anchor=pts.Anchor(first_stage=0.5),
                                                         warn_truncation=False),
        "BiEncoder.query_encoder": lambda: bi_encoder.query_encoder(),
        "BiEncoder.doc_encoder": lambda: bi_encoder.doc_encoder(),
        "FaissIndex.retriever": lambda: faiss_index.retriever(bi_encoder, num_results=5),
        "ScoreFusion": lambda: pts.ScoreFusion(bm25_slice, faiss_index.retriever(bi_encoder), num_results=5),
        "PolyEncoder.text_scorer": lambda: poly.text_scorer(),
        "PolyEncoder.reranker": lambda: poly.reranker(faiss_index),
        "FaissIndex.scorer": lambda: faiss_index.scorer(bi_encoder),
        "BudgetedReranker": lambda: budget.BudgetedReranker(
            pts.CrossEncoder(checkpoint, warn_truncation=False), budget_ms=1e9),
    }
    return build[name]()


NAMES = [
    "CrossEncoder", "SparseCrossEncoder", "SparseCrossEncoder.from_cross_encoder", "TextLoader(dataset)",
    "TextLoader(iterator)", "BM25Retriever", "BiEncoder.text_scorer", "BiEncoder.query_encoder",
    "BiEncoder.doc_encoder", "FaissIndex.retriever", "ScoreFusion", "PolyEncoder.text_scorer", "PolyEncoder.reranker",
    "FaissIndex.scorer", "BudgetedReranker", "BiEncoder.text_scorer(anchor)", "CrossEncoder(anchor)",
]


def _input(name, queries, candidates):
    if name.startswith("TextLoader"):
        return candidates.drop(columns=["text"])
    if name in ("BM25Retriever", "FaissIndex.retriever", "ScoreFusion", "BiEncoder.query_encoder"):
        return queries
    if name == "BiEncoder.doc_encoder":
        return candidates[["docno", "text"]].drop_duplicates("docno")
    return candidates


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    for column in ("query_vec", "doc_vec"):
        if column in frame.columns:
            frame[column] = frame[column].map(lambda vector: [round(float(value), 5) for value in vector])
    return frame


@pytest.mark.parametrize("name", NAMES)
def test_rebuilt_from_its_attributes_it_gives_the_same_results(
    name, vaswani, docs, bi_encoder, faiss_index, bm25_slice, shallow_checkpoint, queries, candidates
):
    transformer = _transformers(name, vaswani=vaswani, docs=docs, bi_encoder=bi_encoder, faiss_index=faiss_index,
                                bm25_slice=bm25_slice, checkpoint=str(shallow_checkpoint))
    attributes = {attribute.name: attribute.value for attribute in pt.inspect.transformer_attributes(transformer)}
    assert attributes, f"{name} exposes no constructor argument"
    rebuilt = pt.inspect.transformer_apply_attributes(transformer)
    assert type(rebuilt) is type(transformer)
    inp = _input(name, queries, candidates)
    pd.testing.assert_frame_equal(_comparable(rebuilt(inp)), _comparable(transformer(inp)), atol=1e-5, rtol=0)


def test_the_cross_encoder_reports_the_model_it_was_given(shallow_checkpoint):
    reranker = pts.CrossEncoder(str(shallow_checkpoint), batch_size=4)
    attributes = {attribute.name: attribute.value for attribute in pt.inspect.transformer_attributes(reranker)}
    assert attributes["model"] == str(shallow_checkpoint)
    assert attributes["batch_size"] == 4
    changed = pt.inspect.transformer_apply_attributes(reranker, batch_size=2)
    assert (changed.model, changed.batch_size) == (str(shallow_checkpoint), 2)
    assert reranker.network is not None  # the loaded weights have their own name


def test_the_sparse_cross_encoder_reports_its_window(shallow_checkpoint):
    sparse = pts.SparseCrossEncoder(str(shallow_checkpoint), window=3)
    attributes = {attribute.name: attribute.value for attribute in pt.inspect.transformer_attributes(sparse)}
    assert attributes["window"] == 3
    assert pt.inspect.transformer_apply_attributes(sparse, window=1).pattern.window == 1


def test_factory_made_transformers_compare_equal_when_built_alike(bi_encoder, faiss_index, work):
    assert bi_encoder.text_scorer() == bi_encoder.text_scorer()
    assert hash(bi_encoder.text_scorer()) == hash(bi_encoder.text_scorer())
    assert bi_encoder.query_encoder() == bi_encoder.query_encoder(verbose=True)  # how it reports does not count
    assert bi_encoder.query_encoder() != bi_encoder.doc_encoder()
    assert bi_encoder.text_scorer() != pts.BiEncoder(doc_length=64).text_scorer()  # another model object
    assert faiss_index.retriever(bi_encoder) == pts.FaissIndex(work / "slice.faiss").retriever(bi_encoder)
    assert faiss_index.retriever(bi_encoder, num_results=5) != faiss_index.retriever(bi_encoder, num_results=6)
    assert len({faiss_index.retriever(bi_encoder), faiss_index.retriever(bi_encoder)}) == 1
    poly = pts.PolyEncoder()
    assert poly.text_scorer() == poly.text_scorer()
