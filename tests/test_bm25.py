import json
import os
from pathlib import Path

import pandas as pd
import pyterrier as pt
import pytest
from pyterrier_pisa import PisaIndex

from pyterrier_shallow import datasets
from pyterrier_shallow.bm25 import bm25, bm25_index

FIXTURE = Path(__file__).parent / "fixtures" / "beir_nfcorpus"
MEASURES = [pt.measures.nDCG @ 10, pt.measures.AP]


@pytest.fixture(scope="session")
def vaswani_index(tmp_path_factory):
    return tmp_path_factory.mktemp("bm25") / "vaswani"


@pytest.fixture(scope="session")
def nfcorpus_test(shared_data, tmp_path_factory):
    dataset = datasets.nfcorpus(shared_data)
    path = tmp_path_factory.mktemp("bm25") / "nfcorpus-test"
    return dataset, bm25(dataset, path)


def evaluate(retriever, topics, qrels):
    result = pt.Experiment([retriever], topics, qrels, MEASURES, names=["bm25"])
    return result.set_index("name").loc["bm25"]


def test_vaswani_reference_figures(vaswani_index):
    dataset = datasets.vaswani()  # the bundled copy
    scores = evaluate(bm25(dataset, vaswani_index), dataset.get_topics(), dataset.get_qrels())
    assert scores["nDCG@10"] == pytest.approx(0.467, abs=0.005)
    assert scores["AP"] == pytest.approx(0.305, abs=0.005)


def test_nfcorpus_test_reference_figure(nfcorpus_test):
    dataset, retriever = nfcorpus_test
    with pytest.warns(UserWarning, match="15 of 323 queries matched no document"):
        scores = evaluate(retriever, *dataset.get_topicsqrels("test"))
    assert scores["nDCG@10"] == pytest.approx(0.336, abs=0.005)


def test_safe_queries_retrieve_what_raw_queries_do_on_pisa(nfcorpus_test):
    dataset, retriever = nfcorpus_test
    topics = dataset.get_topics("test")
    raw = topics.assign(query=topics["query_0"]).drop(columns="query_0")
    with pytest.warns(UserWarning, match="15 of 323 queries matched no document"):
        safe = retriever(topics)
    with pytest.warns(UserWarning, match="15 of 323 queries matched no document"):
        original = retriever(raw)
    pd.testing.assert_frame_equal(safe[["qid", "docno", "score"]], original[["qid", "docno", "score"]])
    assert (safe["query"] != original["query"]).sum() > 0


def test_nul_characters_are_dropped_by_safe_query(nfcorpus_test):
    _, retriever = nfcorpus_test
    clean = retriever.search("vitamin d deficiency")
    nul = retriever.search(datasets.safe_query("vitamin d\x00 deficiency"))
    pd.testing.assert_frame_equal(clean[["docno", "score"]], nul[["docno", "score"]])


def test_result_frame(nfcorpus_test):
    dataset, retriever = nfcorpus_test
    topics = dataset.get_topics("test").head(3).assign(extra=[1, 2, 3])
    result = retriever(topics)
    assert set(topics.columns) <= set(result.columns)
    assert result["score"].dtype == "float32"
    assert result.groupby("qid")["rank"].min().eq(0).all()
    assert result.groupby("qid").size().max() == 1000
    assert result["docno"].map(type).eq(str).all() and result["qid"].map(type).eq(str).all()
    empty = retriever(topics.head(0))
    assert len(empty) == 0 and {"qid", "query", "docno", "score", "rank"} <= set(empty.columns)
    assert len((retriever % 5)(topics)) == 15


def test_num_results_and_parameters(nfcorpus_test, tmp_path):
    dataset, retriever = nfcorpus_test
    path = Path(retriever.path)
    topics = dataset.get_topics("test").head(2)
    short = bm25(None, path, num_results=10)(topics)
    assert len(short) == 20
    other = bm25(None, path, num_results=10, k1=1.2, b=0.75)(topics)
    assert not (short["score"].to_numpy() == other["score"].to_numpy()).all()


def test_index_is_reused_without_reading_the_source(nfcorpus_test):
    _, retriever = nfcorpus_test
    path = Path(retriever.path)
    before = {file: file.stat().st_mtime_ns for file in path.iterdir()}

    def must_not_be_read():
        raise AssertionError("the corpus was read again")
        yield

    index = bm25_index(must_not_be_read(), path)
    assert isinstance(index, PisaIndex) and index.num_docs() == 3162
    assert {file: file.stat().st_mtime_ns for file in path.iterdir() if file in before} == before
    meta = json.loads((path / "pt_meta.json").read_text())
    assert meta["stemmer"] == "porter2"
    assert meta["pyterrier_shallow"] == {"fields": ["title", "text"], "stopwords": "terrier", "num_docs": 3162}


def test_frame_source_with_titles(loaded_beir, tmp_path):
    corpus = loaded_beir.get_corpus_frame().assign(title=lambda frame: frame["docno"].str.replace("-", " "))
    index = bm25_index(corpus, tmp_path / "titles")
    assert index.num_docs() == 37
    result = index.bm25(num_results=5).search("MED 10")
    assert "MED-10" in set(result["docno"])  # found through its title only
    plain = bm25_index(corpus, tmp_path / "text-only", fields=("text",)).bm25().search("MED 10")
    assert "MED-10" not in set(plain["docno"])


@pytest.fixture
def loaded_beir():
    return datasets.beir(FIXTURE)


def test_stopwords(loaded_beir, tmp_path):
    path = tmp_path / "index"
    bm25_index(loaded_beir, path)
    query = "related information"  # both on the Terrier stopword list
    with pytest.warns(UserWarning, match="1 of 1 queries matched no document"):
        assert len(bm25(None, path).search(query)) == 0
    assert len(bm25(None, path, stopwords="none").search(query)) > 0
    kept = tmp_path / "kept"
    bm25_index(loaded_beir, kept, stopwords="none")
    assert json.loads((kept / "pt_meta.json").read_text())["pyterrier_shallow"]["stopwords"] == "none"
    assert len(bm25(None, kept).search(query)) > 0  # the recorded list is the default


def test_stemmer_mismatch_and_unknown_settings(loaded_beir, tmp_path):
    path = tmp_path / "index"
    bm25_index(loaded_beir, path)
    with pytest.raises(ValueError, match="built with stemmer='porter2', not 'krovetz'"):
        bm25_index(loaded_beir, path, stemmer="krovetz")
    with pytest.raises(ValueError, match="snowball"):
        bm25_index(loaded_beir, tmp_path / "other", stemmer="snowball")
    with pytest.raises(ValueError, match="english"):
        bm25_index(loaded_beir, tmp_path / "other", stopwords="english")
    assert not (tmp_path / "other").exists()


def test_failed_build_leaves_nothing(loaded_beir, tmp_path):
    docs = list(loaded_beir.get_corpus_iter())
    docs.insert(10, dict(docs[3]))
    path = tmp_path / "index"
    with pytest.raises(ValueError, match=f"docno '{docs[3]['docno']}' occurs twice"):
        bm25_index(docs, path)
    assert list(tmp_path.iterdir()) == []


def test_incomplete_index_is_rebuilt(loaded_beir, tmp_path):
    path = tmp_path / "index"
    path.mkdir()
    (path / "fwd.documents").write_text("left over from an interrupted build\n")
    index = bm25_index(loaded_beir, path)
    assert index.num_docs() == 37 and (path / "pt_meta.json").is_file()
    assert sorted(tmp_path.iterdir()) == [path]


def test_foreign_folder_is_not_touched(loaded_beir, tmp_path):
    path = tmp_path / "notes"
    path.mkdir()
    (path / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a PISA index"):
        bm25_index(loaded_beir, path)
    assert (path / "todo.txt").read_text() == "keep me"


def test_missing_index_without_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="no BM25 index"):
        bm25(None, tmp_path / "index")


@pytest.mark.parametrize(
    ("docs", "message"),
    [
        ([], "no documents"),
        ([{"text": "no docno here"}], "without a str docno"),
        ([{"docno": 7, "text": "numeric docno"}], "without a str docno"),
        ([{"docno": "a b", "text": "spaced"}], "holds whitespace"),
        ([{"docno": "d1", "body": "wrong field"}], r"none of the fields \['title', 'text'\]"),
        ([{"docno": "d1", "text": float("nan")}], "non-string 'text'"),
        ([{"docno": "d1", "title": "", "text": "  "}], "no text"),
    ],
)
def test_bad_documents(docs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        bm25_index(docs, tmp_path / "index")
    assert list(tmp_path.iterdir()) == []


def test_bad_document_after_the_first(loaded_beir, tmp_path):
    docs = [*loaded_beir.get_corpus_iter(), {"docno": "last", "text": None}]
    with pytest.raises(ValueError, match="'last' has a non-string 'text'"):
        bm25_index(docs, tmp_path / "index")
    assert list(tmp_path.iterdir()) == []


def test_bad_source_type(tmp_path):
    with pytest.raises(TypeError, match="cannot index str"):
        bm25_index("corpus.jsonl", tmp_path / "index")
    with pytest.raises(TypeError, match="cannot index int"):
        bm25_index(3, tmp_path / "index")


def test_verbose_build_and_threads(loaded_beir, tmp_path):
    topics = loaded_beir.get_topics()
    retriever = bm25(loaded_beir, tmp_path / "index", threads=2, verbose=True, num_results=3)
    assert os.path.isdir(tmp_path / "index")
    # pyterrier-pisa's progress bar fails now and then (SystemError) when several threads retrieve
    for _ in range(50):
        assert len(retriever(topics)) == 3 * len(topics)
    assert retriever._pisa().verbose is False  # PISA's own bar is off with several threads
    assert bm25(None, tmp_path / "index", verbose=True).verbose is True


@pytest.fixture(scope="module")
def fixture_bm25(tmp_path_factory):
    """BM25 over the small BEIR excerpt of NFCorpus kept with the tests (no collections needed)."""
    docs = pd.read_json(FIXTURE / "corpus.jsonl", lines=True).rename(columns={"_id": "docno"})
    docs = docs.astype({"docno": str})[["docno", "title", "text"]]
    return bm25(docs, tmp_path_factory.mktemp("bm25") / "fixture", num_results=5)


def _queries(*texts, qids=None):
    return pd.DataFrame({"qid": qids or [str(i) for i in range(len(texts))], "query": list(texts)})


@pytest.mark.parametrize("bad", [None, float("nan"), pd.NA])
def test_a_missing_query_is_an_error_naming_its_row(fixture_bm25, bad):
    with pytest.raises(ValueError, match=r"1 row\(s\) have a missing or non-string 'query' \(first: qid='1'\)"):
        fixture_bm25(_queries("vitamin d", bad))


@pytest.mark.parametrize("qids", [[1, 2], [1.0, 2.0], ["1", 2]])
def test_qids_that_are_not_str_are_an_error(fixture_bm25, qids):
    with pytest.raises(TypeError, match="'qid' must hold str"):
        fixture_bm25(_queries("vitamin d", "fat", qids=qids))


def test_a_repeated_qid_is_an_error(fixture_bm25):
    with pytest.raises(ValueError, match=r"1 qid\(s\) occur more than once \(first: '7'\)"):
        fixture_bm25(_queries("vitamin d", "fat", qids=["7", "7"]))


def test_queries_without_terms_give_no_rows_and_are_counted(fixture_bm25):
    queries = _queries("vitamin d", "", "   ", "\U0001f600", "\x07\x08")
    with pytest.warns(UserWarning, match=r"4 of 5 queries matched no document .*4 of them have no word characters"):
        out = fixture_bm25(queries)
    assert set(out["qid"]) == {"0"}


def test_not_a_frame_and_duplicated_columns(fixture_bm25):
    with pytest.raises(TypeError, match="DataFrame"):
        fixture_bm25.transform({"qid": ["1"], "query": ["fat"]})
    queries = _queries("fat")
    with pytest.raises(ValueError, match="duplicated column"):
        fixture_bm25(pd.concat([queries, queries[["query"]]], axis=1))


def test_pickles_and_reopens_its_index(fixture_bm25):
    import pickle

    queries = _queries("vitamin d", "fat")
    expected = fixture_bm25(queries)
    copy = pickle.loads(pickle.dumps(fixture_bm25))
    pd.testing.assert_frame_equal(copy(queries), expected)
    pipeline = pickle.loads(pickle.dumps(fixture_bm25 % 2))
    assert len(pipeline(queries)) == 4


def test_exposes_its_arguments_for_inspection(fixture_bm25):
    rebuilt = pt.inspect.transformer_apply_attributes(fixture_bm25, num_results=3)
    assert rebuilt.num_results == 3 and rebuilt.path == fixture_bm25.path
    assert len(rebuilt(_queries("vitamin d"))) == 3


def test_indexing_and_first_search_print_nothing_but_one_progress_bar(tmp_path, capfd):
    """PISA's native stage logs, percentages and index paths are held back; verbose shows one progress bar."""
    capfd.readouterr()
    quiet = bm25(datasets.vaswani(), tmp_path / "quiet")
    assert len(quiet.search("dielectric constant of liquids")) > 0
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    verbose = bm25(datasets.vaswani(), tmp_path / "verbose", verbose=True)
    verbose.search("dielectric constant of liquids")
    out, err = capfd.readouterr()
    assert out == ""
    assert "BM25 indexing" in err
    assert "[info]" not in err and "Storing terms" not in err


def test_held_back_native_output_is_shown_when_the_block_fails(capfd):
    import os

    from pyterrier_shallow._native_output import native_output_held_back

    with pytest.raises(RuntimeError, match="indexing failed"), native_output_held_back():
        os.write(1, b"native detail that explains the failure\n")
        raise RuntimeError("indexing failed")
    out, err = capfd.readouterr()
    assert "native detail that explains the failure" in err
    with native_output_held_back() as console:
        os.write(2, b"held back\n")
        print("progress", file=console)
    out, err = capfd.readouterr()
    assert "held back" not in out + err
    assert "progress" in err


def test_the_index_folder_gets_the_usual_permissions(tmp_path):
    import stat

    umask = os.umask(0o022)
    try:
        bm25(datasets.vaswani(), tmp_path / "index")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "index").stat().st_mode) == 0o755
