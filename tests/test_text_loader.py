import pandas as pd
import pyterrier as pt
import pytest

import pyterrier_shallow as pts


@pytest.fixture(scope="module")
def documents(shared_data):
    docs = []
    with open(shared_data / "nfcorpus" / "test.docs", encoding="utf-8") as handle:
        for line, _ in zip(handle, range(50)):
            docno, text = line.rstrip("\n").split("\t", 1)
            docs.append({"docno": docno, "text": text})
    return docs


@pytest.fixture()
def results(documents):
    return pd.DataFrame(
        {"qid": ["q1", "q1", "q2"], "query": ["a", "a", "b"], "docno": [d["docno"] for d in documents[:3]], "x": 1}
    )


@pytest.mark.parametrize("kind", ["iterable", "mapping", "frame"])
def test_attaches_text_from_every_kind_of_source(documents, results, kind):
    source = {
        "iterable": documents,
        "mapping": {d["docno"]: d["text"] for d in documents},
        "frame": pd.DataFrame(documents),
    }[kind]
    out = pts.TextLoader(source)(results)
    assert out["text"].tolist() == [d["text"] for d in documents[:3]]
    assert list(out.columns) == [*results.columns, "text"]


def test_reads_a_dataset_corpus(documents, results):
    class Dataset:
        def get_corpus_iter(self):
            return iter(documents)

    assert pts.TextLoader(Dataset())(results)["text"].iloc[0] == documents[0]["text"]


def test_unknown_docno_is_an_error(documents, results):
    with pytest.raises(KeyError, match="1 row"):
        pts.TextLoader(documents[1:])(results)


def test_existing_column_needs_overwrite(documents, results):
    frame = results.assign(text="old")
    with pytest.raises(ValueError, match="overwrite=True"):
        pts.TextLoader(documents)(frame)
    assert pts.TextLoader(documents, overwrite=True)(frame)["text"].iloc[0] == documents[0]["text"]


def test_missing_docno_column(documents, results):
    with pytest.raises(KeyError, match="docno"):
        pts.TextLoader(documents)(results.drop(columns=["docno"]))


def test_empty_frame(documents):
    out = pts.TextLoader(documents)(pd.DataFrame(columns=["qid", "query", "docno", "score", "rank"]))
    assert len(out) == 0 and "text" in out.columns


class TestTextLoaderContract(pt.testing.TransformerTestCase):
    @staticmethod
    def get_transformer():
        return pts.TextLoader({"d1": "some text"})
